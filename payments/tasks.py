"""Payment tasks: thin, by id, safe to run twice (see `billing_site.tasks`). Each re-checks the row's state
before it calls the provider, and every provider call carries the idempotency key stored on the row, so a
duplicate or retried task never charges or refunds twice."""

from __future__ import annotations

from billing_site.tasks import billing_task, parse_now
from payments.processors import ProcessorTimeout
from payments.services import collection, intents, refunds


@billing_task("payments.invoice_collect", time_limit=120)
def invoice_collect_task(invoice_id: str, now: str | None = None, offboarding: bool = False) -> dict[str, int]:
    """Run the collection waterfall on one invoice whose attempt is due (`offboarding`: the final collection
    an offboarding queued, which may charge the customer it deleted: `invoice_collect`)."""
    result = collection.invoice_collect_due(invoice_id=invoice_id, now=parse_now(now), offboarding=offboarding)
    if result is None:
        return {"skipped": 1}
    return {"collected": 1} if result.attempt.success else {"failed": 1}


@billing_task("payments.payment_intent_resolve", time_limit=120, retry_for=(ProcessorTimeout,))
def payment_intent_resolve_task(payment_intent_id: str, now: str | None = None) -> dict[str, int]:
    """Settle an unknown payment from the provider's records (reads only; never charges)."""
    status = intents.payment_intent_resolve_due(payment_intent_id=payment_intent_id, now=parse_now(now))
    return {status or "skipped": 1}


@billing_task("payments.refund_resend", time_limit=120)
def refund_resend_task(refund_id: str, now: str | None = None) -> dict[str, int]:
    """Ask the provider again for a refund whose answer was lost, with the refund's own key."""
    status = refunds.refund_resend_due(refund_id=refund_id, now=parse_now(now))
    return {"refunds_retried": 1} if status is not None else {"skipped": 1}


@billing_task("payments.test_clock_run", time_limit=900)
def test_clock_run_task(clock_id: str) -> dict:
    """Advance a test clock that is `advancing` to its target (see `payments.clocks`)."""
    from payments.clocks import test_clock_run

    return test_clock_run(clock_id=clock_id)
