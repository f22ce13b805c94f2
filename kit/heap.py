"""Keeping the cyclic garbage collector's full collections short in long-running processes."""

import gc


def freeze_startup_heap() -> int:
    """Moves every object alive after start-up out of the collector's sight.

    The modules, the app, its routes and the pydantic schemas are some 130,000 objects that live
    as long as the process, and every full (generation 2) collection walked all of them: under
    load that was a 76-114 ms pause about once a second, every request in flight waiting it out.
    Frozen, they are never scanned again and the pause is 3-6 ms
    (docs/decisions/0010-gc-freeze.md). They are still freed by reference counting if they ever
    die; only cycles among them would be kept.
    Returns how many objects are frozen.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
