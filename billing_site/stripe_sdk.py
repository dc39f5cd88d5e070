"""The configured Stripe SDK client, for every app that talks to Stripe.

`stripe_client()` builds one `stripe.StripeClient` per process from the settings (`STRIPE_API_KEY`,
`STRIPE_API_BASE`, `STRIPE_TIMEOUT_SECONDS`) and keeps it, so its HTTP session and connections are reused
across calls. `client_build()` makes one with explicit arguments (tests that inject an HTTP client).

The API key is only handed to the SDK: it never appears in a log line (the filter below also scrubs the
SDK's own DEBUG output, where Stripe echoes a masked key on an authentication error), an error message or
a `repr`.
"""

from __future__ import annotations

import logging
import re
import threading

import stripe
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

_SECRET = re.compile(r"\b(sk|rk)_(test|live)_[A-Za-z0-9*]+")
# Network errors, 409s and 5xx are retried by the SDK itself, with the request's idempotency key, so a
# retry gets Stripe's first answer instead of doing the work twice.
DEFAULT_NETWORK_RETRIES = 2


class StripeNotConfigured(ImproperlyConfigured):
    pass


def redact(text: str) -> str:
    """`text` with anything shaped like a Stripe secret or restricted key replaced."""
    return _SECRET.sub("[redacted]", text)


class _RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if _SECRET.search(message):
            record.msg, record.args = redact(message), None
        return True


_SDK_LOGGER = logging.getLogger("stripe")
if not any(isinstance(f, _RedactSecrets) for f in _SDK_LOGGER.filters):
    _SDK_LOGGER.addFilter(_RedactSecrets())


def api_base() -> str:
    return getattr(settings, "STRIPE_API_BASE", None) or stripe.DEFAULT_API_BASE


def client_build(
    *,
    api_key: str,
    http_client: stripe.HTTPClient | None = None,
    max_network_retries: int = DEFAULT_NETWORK_RETRIES,
    base: str | None = None,
    timeout: float | None = None,
) -> stripe.StripeClient:
    """A client for `api_key` talking to `base` (default: `STRIPE_API_BASE`, else Stripe's own).

    Without an `http_client` the SDK's requests-based client is used with `timeout` seconds (default
    `STRIPE_TIMEOUT_SECONDS`) for connecting and for each answer."""
    if http_client is None:
        seconds = timeout if timeout is not None else settings.STRIPE_TIMEOUT_SECONDS
        http_client = stripe.RequestsClient(timeout=seconds)
    return stripe.StripeClient(
        api_key,
        http_client=http_client,
        max_network_retries=max_network_retries,
        base_addresses={"api": base or api_base()},
    )


_lock = threading.Lock()
_clients: dict[tuple[str, str, float, int], stripe.StripeClient] = {}


def stripe_client(*, max_network_retries: int = DEFAULT_NETWORK_RETRIES) -> stripe.StripeClient:
    """The process's client for the configured account. Raises `StripeNotConfigured` without a key."""
    api_key = getattr(settings, "STRIPE_API_KEY", None)
    if not api_key:
        raise StripeNotConfigured("STRIPE_API_KEY must be set to talk to Stripe")
    key = (api_key, api_base(), float(settings.STRIPE_TIMEOUT_SECONDS), max_network_retries)
    with _lock:
        client = _clients.get(key)
        if client is None:
            # Settings changed (tests point the base at a new fake): the old clients are of no use.
            _clients.clear()
            client = _clients[key] = client_build(api_key=api_key, max_network_retries=max_network_retries)
        return client


def stripe_configured() -> bool:
    return bool(getattr(settings, "STRIPE_API_KEY", None))
