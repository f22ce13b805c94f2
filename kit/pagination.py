"""Opaque keyset cursors: clients pass back what they were given and never build one."""

import base64
import binascii

from kit.errors import InvalidRequest


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"k{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not raw.startswith("k"):
            raise ValueError(raw)
        last_id = int(raw[1:])
        if not 0 <= last_id < 2**63:
            raise ValueError(raw)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidRequest(
            "The cursor is not one this API returned.",
            errors=[{"loc": ["query", "cursor"], "msg": "invalid cursor", "type": "cursor"}],
        ) from exc
    return last_id
