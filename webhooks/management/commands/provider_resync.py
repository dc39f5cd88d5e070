from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import stripe
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from billing_site.progress import Summary, progress_bar
from webhooks.inbound import PROVIDERS, provider_events_resync
from webhooks.stripe_sdk import StripeNotConfigured


def _since(value: str, now: datetime) -> datetime:
    if value.endswith(("d", "h")) and value[:-1].isdigit():
        amount = int(value[:-1])
        return now - (timedelta(days=amount) if value.endswith("d") else timedelta(hours=amount))
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise CommandError(
            f"--since must be RFC 3339 (2026-01-31T00:00:00Z) or an age (36h, 3d), got {value!r}"
        ) from None
    if parsed.tzinfo is None:
        raise CommandError("--since needs a UTC offset (for example a trailing Z)")
    return parsed.astimezone(UTC)


class Command(BaseCommand):
    help = (
        "Read the provider's events since a time (Stripe keeps 30 days), store the ones we missed and run "
        "every one not yet processed through the same handlers as webhooks. Safe to run again."
    )

    def add_arguments(self, parser) -> None:  # type: ignore[no-untyped-def]
        parser.add_argument("--since", required=True, help="RFC 3339 time, or an age such as 36h or 3d")
        parser.add_argument("--provider", default="stripe", choices=PROVIDERS)
        parser.add_argument("--type", action="append", dest="types", help="only this event type (repeatable)")

    def handle(self, *args, **options) -> None:  # type: ignore[no-untyped-def]
        now = timezone.now()
        since = _since(options["since"], now)
        if since > now:
            raise CommandError("--since is in the future")
        summary = Summary("provider_resync")

        def progress(events):  # type: ignore[no-untyped-def]
            return progress_bar(events, stream=self.stderr, desc="provider events", unit="event")

        try:
            counts = provider_events_resync(
                provider=options["provider"], since=since, now=now, types=options["types"], progress=progress
            )
        except StripeNotConfigured as exc:
            raise CommandError(f"{exc}: the resync reads Stripe's API with STRIPE_API_KEY") from None
        except stripe.StripeError as exc:
            raise CommandError(f"Stripe refused the request: {type(exc).__name__}") from None
        self.stdout.write(orjson.dumps(counts).decode())
        self.stderr.write(summary.line(**counts), style_func=str)  # stdout stays one JSON document
        if counts["failed"]:
            raise CommandError(f"{counts['failed']} event(s) failed; see Provider events in admin")
