"""The API process keeps its start-up heap out of the garbage collector's full collections."""

import gc

from fastapi import FastAPI


def test_the_objects_alive_after_start_up_are_frozen(app: FastAPI) -> None:
    assert app.state.orders is not None  # started
    # The framework, the app and its schemas: tens of thousands of objects, never scanned again.
    assert gc.get_freeze_count() > 20_000
