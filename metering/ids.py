"""Public ids of usage events: `evt_` + the row's key in 10 base32 characters + its 16-character token.

The key makes the id resolvable; the token, stored on the row, makes it unguessable. The token's first
3 characters are the event's UTC day (days since 2000-01-01, 15 bits) and the other 13 are random
(65 bits): the day names the partition that holds the event, so a lookup by id reads one partition's
BRIN index instead of every partition's (`event_day`). Tokens made before the day prefix existed do not
decode to the right day; lookups fall back to every partition when the day finds nothing.
"""

from __future__ import annotations

import base64
import secrets
from datetime import UTC, date, datetime, timedelta

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


DAY0 = date(2000, 1, 1)
_DAY_SPAN = 32 * 32 * 32
_DAY_CHARS = 3
_day_prefixes: dict[date, str] = {}


def _day_prefix(day: date) -> str:
    prefix = _day_prefixes.get(day)
    if prefix is None:
        n = (day - DAY0).days % _DAY_SPAN
        prefix = ALPHABET[n >> 10] + ALPHABET[(n >> 5) & 31] + ALPHABET[n & 31]
        if len(_day_prefixes) < 100_000:
            _day_prefixes[day] = prefix
    return prefix


def new_tokens_for(timestamps: list[datetime]) -> list[str]:
    """One token per event: its UTC day, then 65 random bits. Timestamps must be aware UTC."""
    text = base64.b32encode(secrets.token_bytes(10 * len(timestamps))).translate(_RELETTER).decode()
    return [
        _day_prefix(ts.date()) + text[i * _TOKEN_CHARS + _DAY_CHARS : (i + 1) * _TOKEN_CHARS]
        for i, ts in enumerate(timestamps)
    ]


def event_day(token: str) -> tuple[datetime, datetime] | None:
    """[start, end) of the UTC day a token names, or None for a malformed token."""
    if len(token) != _TOKEN_CHARS or any(char not in _INDEX for char in token[:_DAY_CHARS]):
        return None
    n = (_INDEX[token[0]] << 10) | (_INDEX[token[1]] << 5) | _INDEX[token[2]]
    start = datetime(DAY0.year, DAY0.month, DAY0.day, tzinfo=UTC) + timedelta(days=n)
    return start, start + timedelta(days=1)


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
