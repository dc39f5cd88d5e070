"""Public ids of usage events: `evt_` + the row's key in 10 base32 characters + its 16-character token.

The key makes the id resolvable through the primary key; the token (80 random bits, stored on the row)
makes it unguessable. Neither needs an index of its own on the events table.
"""

from __future__ import annotations

import secrets

from billing_site.ids import ALPHABET, encode_base32

PREFIX = "evt_"
_KEY_CHARS = 10
_TOKEN_CHARS = 16
_INDEX = {char: value for value, char in enumerate(ALPHABET)}


def new_token() -> str:
    return encode_base32(secrets.randbits(80), _TOKEN_CHARS)


def event_public_id(pk: int, token: str) -> str:
    return f"{PREFIX}{encode_base32(pk, _KEY_CHARS)}{token}"


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
