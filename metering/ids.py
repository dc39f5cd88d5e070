"""Public ids of usage events: `evt_` + the row's key in 10 base32 characters + its 16-character token.

The key makes the id resolvable through the primary key; the token (80 random bits, stored on the row)
makes it unguessable. Neither needs an index of its own on the events table.
"""

from __future__ import annotations

import base64
import secrets

from billing_site.ids import ALPHABET

PREFIX = "evt_"
_KEY_CHARS = 10
_TOKEN_CHARS = 16
_INDEX = {char: value for value, char in enumerate(ALPHABET)}


# Ingestion makes a token and an id for every event, so both avoid per-character Python loops: tokens
# come from the C base32 encoder re-lettered to our alphabet, keys from a table of 10-bit pairs.
_RELETTER = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", ALPHABET.encode())
_PAIRS = [a + b for a in ALPHABET for b in ALPHABET]


def new_tokens(count: int) -> list[str]:
    """`count` tokens of 80 random bits each (10 bytes -> exactly 16 base32 characters, no padding)."""
    text = base64.b32encode(secrets.token_bytes(10 * count)).translate(_RELETTER).decode()
    return [text[i : i + _TOKEN_CHARS] for i in range(0, len(text), _TOKEN_CHARS)]


def new_token() -> str:
    return new_tokens(1)[0]


def event_public_id(pk: int, token: str) -> str:
    pairs = _PAIRS
    return (
        f"{PREFIX}{pairs[(pk >> 40) & 1023]}{pairs[(pk >> 30) & 1023]}{pairs[(pk >> 20) & 1023]}"
        f"{pairs[(pk >> 10) & 1023]}{pairs[pk & 1023]}{token}"
    )


def parse_event_id(public_id: object) -> tuple[int, str] | None:
    """(primary key, token) of a well-formed event id, or None."""
    if not isinstance(public_id, str) or not public_id.startswith(PREFIX):
        return None
    body = public_id[len(PREFIX) :]
    if len(body) != _KEY_CHARS + _TOKEN_CHARS or any(char not in _INDEX for char in body):
        return None
    pk = 0
    for char in body[:_KEY_CHARS]:
        pk = pk * 32 + _INDEX[char]
    return pk, body[_KEY_CHARS:]
