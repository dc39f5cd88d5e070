"""The Stripe SDK as the inbound side needs it: signature verification, and an API client for resync
built by the project-wide `billing_site.stripe_sdk` (the key is only handed to the SDK, never logged)."""

from __future__ import annotations

import time
from typing import Any

import stripe
from django.conf import settings

from billing_site.stripe_sdk import StripeNotConfigured, client_build

__all__ = ["StripeNotConfigured", "stripe_client", "stripe_event_verify"]

TOLERANCE_SECONDS = 300

# Tests put a fake here; None is the SDK's own HTTP client.
HTTP_CLIENT: stripe.HTTPClient | None = None


def stripe_client() -> stripe.StripeClient:
    if not settings.STRIPE_API_KEY:
        raise StripeNotConfigured("STRIPE_API_KEY is not set")
    return client_build(api_key=settings.STRIPE_API_KEY, http_client=HTTP_CLIENT, max_network_retries=2)


def stripe_event_verify(*, payload: bytes, signature_header: str | None, secret: str) -> Any:
    """The verified event (raises `stripe.SignatureVerificationError` or `ValueError` otherwise).

    The SDK checks the signatures (any one of several `v1` may match, compared in constant time) and that
    the timestamp is no older than the tolerance; it accepts any timestamp in the future, so a signed
    header dated far ahead would stay replayable until then. We refuse those beyond the same tolerance.
    """
    try:
        event = stripe.Webhook.construct_event(payload, signature_header, secret, tolerance=TOLERANCE_SECONDS)
    except (AttributeError, TypeError):
        # Correctly signed JSON that is not an object (the SDK assumes one): malformed, not our error.
        raise ValueError("The body is not a JSON object") from None
    # The SDK has parsed the header already, so its `t=` item is there and is an integer.
    items = (item.split("=", 1) for item in (signature_header or "").split(",") if "=" in item)
    timestamp = int(next(value for key, value in items if key == "t"))
    if timestamp > time.time() + TOLERANCE_SECONDS:
        raise stripe.SignatureVerificationError(
            "Timestamp outside the tolerance zone (in the future)", signature_header, payload
        )
    return event
