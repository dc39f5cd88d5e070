"""The provider side of the usage push: Stripe Billing meters, through the official SDK.

Every write carries an idempotency key, and a meter event also an `identifier`; both are our row id and
both hold for at least 24 hours at Stripe, so sending the same row again inside that window is the same
request, answered once. Calls are retried here (the SDK's own retries are off, so the backoff is ours):
a 429 was refused before Stripe did anything; a timeout, a dropped connection, a 5xx or a 409 (the same
key still in flight) may or may not have been acted on, so once one of those happened the outcome is
`unknown` unless a later attempt gets the answer.

Stripe's numbers come back as JSON numbers (floats for fractions): they are turned into Decimals through
their shortest repr at once, and compared as Decimals.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import stripe

from billing_site.stripe_sdk import redact, stripe_client
from customers.models import Customer
from customers.provider import customer_provider_ensure

ATTEMPTS = 3
BASE_DELAY = 0.5  # seconds; doubled per attempt, with jitter


@dataclass(frozen=True)
class ProviderMeter:
    id: str
    event_name: str
    customer_key: str
    value_key: str
    formula: str


@dataclass(frozen=True)
class Outcome:
    """What became of one write. `sent`: the provider took it. `refused`: it answered no (nothing was
    recorded). `rate_limited`: every attempt was refused with 429 (nothing recorded). `unknown`: no usable
    answer after an attempt that may have been acted on."""

    kind: str
    code: str = ""
    message: str = ""

    @property
    def sent(self) -> bool:
        return self.kind == "sent"


class ProviderUnavailable(Exception):
    """A read or a setup call that did not get an answer; try again later."""


class ProviderRefused(Exception):
    """The provider said no to a setup call (credentials, a missing object): retrying will not help."""


def _message(exc: stripe.StripeError) -> str:
    return redact(getattr(exc, "user_message", None) or str(exc) or type(exc).__name__)[:500]


def to_decimal(value: Any) -> Decimal:
    return Decimal(str(value)) if value is not None else Decimal(0)


class StripeUsageProvider:
    name = "stripe"

    def __init__(
        self,
        client: stripe.StripeClient | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        attempts: int = ATTEMPTS,
        base_delay: float = BASE_DELAY,
    ) -> None:
        self._client = client
        self.sleep = sleep
        self.attempts = attempts
        self.base_delay = base_delay

    @property
    def client(self) -> stripe.StripeClient:
        if self._client is None:
            self._client = stripe_client(max_network_retries=0)
        return self._client

    def delay(self, attempt: int) -> float:
        """Seconds before retry number `attempt + 1`: doubling, with jitter in [half, whole] so lanes that
        were refused together do not come back together."""
        return self.base_delay * (2**attempt) * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not secrets

    # --- writes -----------------------------------------------------------------------------------

    def send(self, *, kind: str, params: dict[str, Any], idempotency_key: str) -> Outcome:
        """Create the meter event (or, for `kind` cancel, the meter event adjustment) in `params`."""
        create = (
            self.client.v1.billing.meter_event_adjustments.create
            if kind == "cancel"
            else self.client.v1.billing.meter_events.create
        )
        maybe_acted = False
        last = Outcome("unknown", "no_answer", "No answer from the provider.")
        for attempt in range(self.attempts):
            if attempt:
                self.sleep(self.delay(attempt - 1))
            try:
                create(params, {"idempotency_key": idempotency_key})
                return Outcome("sent")
            except stripe.RateLimitError as exc:
                last = Outcome("rate_limited", "rate_limited", _message(exc))
            except (stripe.APIConnectionError, stripe.APIError) as exc:
                maybe_acted = True
                last = Outcome("unknown", "no_answer", _message(exc))
            except (stripe.InvalidRequestError, stripe.IdempotencyError, stripe.CardError) as exc:
                # A refusal: had an earlier attempt been acted on, the idempotency key would have replayed
                # its answer instead.
                return Outcome("refused", getattr(exc, "code", None) or "invalid_request", _message(exc))
            except (stripe.AuthenticationError, stripe.PermissionError) as exc:
                return Outcome("refused", "provider_authentication", _message(exc))
            except stripe.StripeError as exc:
                maybe_acted = True
                last = Outcome("unknown", "provider_error", _message(exc))
        if maybe_acted and last.kind == "rate_limited":
            return Outcome("unknown", "no_answer", last.message)
        return last

    # --- reads and setup --------------------------------------------------------------------------

    def _read(self, fn: Callable[[], Any]) -> Any:
        for attempt in range(self.attempts):
            if attempt:
                self.sleep(self.delay(attempt - 1))
            try:
                return fn()
            except (stripe.RateLimitError, stripe.APIConnectionError, stripe.APIError) as exc:
                error: stripe.StripeError = exc
            except stripe.StripeError as exc:
                raise ProviderRefused(_message(exc)) from None
        raise ProviderUnavailable(_message(error))

    def find_meter(self, event_name: str) -> ProviderMeter | None:
        """The active Stripe meter with this event_name (Stripe allows one), or None."""

        def read() -> ProviderMeter | None:
            meters = self.client.v1.billing.meters.list({"status": "active", "limit": 100})
            for meter in meters.auto_paging_iter():
                if meter.event_name == event_name:
                    return ProviderMeter(
                        id=meter.id,
                        event_name=meter.event_name,
                        customer_key=meter.customer_mapping.event_payload_key,
                        value_key=meter.value_settings.event_payload_key,
                        formula=meter.default_aggregation.formula,
                    )
            return None

        return self._read(read)

    def summaries(
        self, *, meter_id: str, customer: str, start: datetime, end: datetime, window: str | None = None
    ) -> dict[datetime, Decimal]:
        """The meter's aggregated value for the customer per `window` ("hour" or "day") in [start, end),
        or over the whole range (keyed by `start`) without one. Windows with nothing are absent."""
        params: dict[str, Any] = {
            "customer": customer,
            "start_time": int(start.timestamp()),
            "end_time": int(end.timestamp()),
            "limit": 100,
        }
        if window:
            params["value_grouping_window"] = window

        def read() -> dict[datetime, Decimal]:
            listed = self.client.v1.billing.meters.event_summaries.list(meter_id, params)
            totals: dict[datetime, Decimal] = {}
            for summary in listed.auto_paging_iter():
                key = datetime.fromtimestamp(summary.start_time, UTC)
                totals[key] = totals.get(key, Decimal(0)) + to_decimal(summary.aggregated_value)
            return totals

        return self._read(read)

    def summary_total(self, *, meter_id: str, customer: str, start: datetime, end: datetime) -> Decimal:
        return sum(self.summaries(meter_id=meter_id, customer=customer, start=start, end=end).values(), Decimal(0))

    def ensure_customer(self, *, customer: Customer, now: datetime) -> str:
        return self._read(lambda: customer_provider_ensure(customer=customer, client=self.client, now=now))


UsageProvider = StripeUsageProvider


def usage_provider() -> UsageProvider:
    """The provider built from settings (`STRIPE_API_KEY`, `STRIPE_API_BASE`)."""
    return StripeUsageProvider()
