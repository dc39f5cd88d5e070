"""Public ids: a type prefix and 26 characters, time-ordered and unguessable (`cus_01j9z...`).

The first 10 characters encode the creation time in milliseconds (so ids sort by creation and new rows
land at the right edge of the primary-key index); the other 16 carry 80 random bits from `secrets`
(incremented instead of redrawn within one millisecond of one process, see `new_id`).
"""

from __future__ import annotations

import secrets
import threading
import time

from django.db import models
from django.utils.deconstruct import deconstructible

# Crockford's base32, lower-cased: no i, l, o, u, so ids are easy to read aloud and sort as strings.
ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
ID_BODY_LENGTH = 26
ID_MAX_LENGTH = 40


def encode_base32(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        value, rem = divmod(value, 32)
        chars.append(ALPHABET[rem])
    return "".join(reversed(chars))


_lock = threading.Lock()
_last = (0, 0)


def new_id(prefix: str) -> str:
    """Within one process ids are strictly increasing, even within a millisecond (the monotonic ULID
    rule: the same millisecond reuses the previous random part plus one), so rows created one after the
    other, such as a change's outbox events, sort in the order they were made."""
    global _last
    millis = time.time_ns() // 1_000_000
    with _lock:
        last_millis, last_random = _last
        if millis <= last_millis:
            millis, random_part = last_millis, last_random + 1
        else:
            random_part = secrets.randbits(80)
        _last = (millis, random_part)
    return f"{prefix}_{encode_base32(millis, 10)}{encode_base32(random_part, 16)}"


def looks_like_id(value: str, prefix: str) -> bool:
    head, sep, body = value.partition("_")
    return bool(sep) and head == prefix and len(body) == ID_BODY_LENGTH and all(c in ALPHABET for c in body)


@deconstructible
class IdGenerator:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def __call__(self) -> str:
        return new_id(self.prefix)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IdGenerator) and other.prefix == self.prefix

    def __hash__(self) -> int:
        return hash(self.prefix)


def PublicIdField(prefix: str) -> models.CharField:
    return models.CharField(primary_key=True, max_length=ID_MAX_LENGTH, default=IdGenerator(prefix), editable=False)


class TimestampedModel(models.Model):
    created_at = models.DateTimeField(auto_now_add=True, db_index=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True
