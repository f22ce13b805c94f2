"""The console's CSS and JS, served under content-hashed names so that browsers keep them forever.

A changed file gets a new name, so `immutable` is safe; the names are computed once at import
from the files shipped in console/static.
"""

import hashlib
from dataclasses import dataclass
from importlib.resources import files

CACHE_CONTROL = "public, max-age=31536000, immutable"
_MEDIA_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    media_type: str


def _load() -> tuple[dict[str, str], dict[str, Asset]]:
    names: dict[str, str] = {}
    served: dict[str, Asset] = {}
    for entry in files("console").joinpath("static").iterdir():
        stem, dot, suffix = entry.name.rpartition(".")
        if not dot or "." + suffix not in _MEDIA_TYPES:
            continue
        body = entry.read_bytes()
        hashed = f"{stem}.{hashlib.sha256(body).hexdigest()[:12]}.{suffix}"
        names[entry.name] = hashed
        served[hashed] = Asset(body, _MEDIA_TYPES["." + suffix])
    return names, served


_NAMES, _SERVED = _load()


def asset_url(name: str) -> str:
    """The URL of a shipped file by its plain name (`console.css`)."""
    return f"/console/static/{_NAMES[name]}"


def asset(hashed_name: str) -> Asset | None:
    return _SERVED.get(hashed_name)
