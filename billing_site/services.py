"""Writes owned by the core: API keys and idempotency housekeeping."""

from __future__ import annotations

import secrets
import string
from datetime import datetime

from billing_site.auth import KEY_PREFIX, api_key_changed_on_commit, hash_key
from billing_site.errors import InvalidRequest
from billing_site.idempotency import idempotency_purge
from billing_site.models import SCOPES, ApiKey

_KEY_ALPHABET = string.ascii_letters + string.digits
_KEY_BODY_LENGTH = 40  # 40 base62 characters: about 238 random bits
_DISPLAY_PREFIX_LENGTH = len(KEY_PREFIX) + 8


def validate_scopes(scopes: list[str] | tuple[str, ...]) -> list[str]:
    cleaned = sorted({s.strip() for s in scopes if s.strip()})
    if not cleaned:
        raise InvalidRequest("At least one scope is required.", param="scopes", code="parameter_missing")
    unknown = [s for s in cleaned if s not in SCOPES]
    if unknown:
        raise InvalidRequest(
            f"Unknown scope(s): {', '.join(unknown)}. Known scopes: {', '.join(SCOPES)}.",
            param="scopes",
            code="unknown_scope",
        )
    return cleaned


def api_key_create(
    *, name: str, scopes: list[str] | tuple[str, ...], expires_at: datetime | None = None
) -> tuple[ApiKey, str]:
    """Create a key and return it with its raw secret, which is never stored and cannot be shown again."""
    if not name.strip():
        raise InvalidRequest("A key needs a name.", param="name", code="parameter_missing")
    raw = KEY_PREFIX + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(_KEY_BODY_LENGTH))
    key = ApiKey.objects.create(
        name=name.strip(),
        prefix=raw[:_DISPLAY_PREFIX_LENGTH],
        key_hash=hash_key(raw),
        scopes=validate_scopes(scopes),
        expires_at=expires_at,
    )
    return key, raw


def api_key_revoke(*, api_key: ApiKey, now: datetime) -> ApiKey:
    # Compare-and-set: revoking twice keeps the first revocation time.
    ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=now, updated_at=now)
    api_key_changed_on_commit()  # every process drops its cached lookups: refused on the next request
    api_key.refresh_from_db()
    return api_key


def idempotency_keys_purge_job(*, now: datetime) -> dict[str, int]:
    return {"deleted": idempotency_purge(now=now)}
