"""The invoice-finalized hook registry: who is called, with what, and inside which transaction."""

from __future__ import annotations

import pytest

from invoicing import hooks
from invoicing.models import Invoice, NumberSequence
from invoicing.services import invoice_finalize
from subscriptions.tests.support import T0, fixed_price, subscribe

pytestmark = pytest.mark.django_db


@pytest.fixture
def calls(monkeypatch):
    """Record every call of the registry (the registered hooks, payments' included, still run)."""
    seen: list[tuple[list[str], object]] = []

    def record(invoices, now):
        seen.append(([i.id for i in invoices], now))

    monkeypatch.setattr(hooks, "on_invoice_finalized", [*hooks.on_invoice_finalized, record])
    return seen


def test_the_writer_runs_the_hooks_with_the_invoices_it_finalized(calls):
    _, invoice = subscribe(None, fixed_price("1000"))
    assert calls == [([invoice.id], T0)]


def test_drafts_are_not_finalized_so_no_hook_runs_until_finalize(calls, settings):
    settings.INVOICE_AUTO_FINALIZE = False
    _, draft = subscribe(None, fixed_price("1000"))
    assert draft.status == "draft" and calls == []
    invoice_finalize(invoice=draft, now=T0)
    assert calls == [([draft.id], T0)]


def test_an_empty_batch_calls_nobody(calls):
    hooks.invoice_finalized_hooks_run([], T0)
    assert calls == []


def test_a_failing_hook_rolls_the_finalization_back(monkeypatch, settings):
    settings.INVOICE_AUTO_FINALIZE = False
    _, draft = subscribe(None, fixed_price("1000"))

    def boom(invoices, now):
        raise RuntimeError("hook failed")

    monkeypatch.setattr(hooks, "on_invoice_finalized", [boom])
    before = NumberSequence.objects.get(name="invoice").next_value
    with pytest.raises(RuntimeError):
        invoice_finalize(invoice=draft, now=T0)
    draft.refresh_from_db()
    assert (draft.status, draft.number) == ("draft", None)
    assert NumberSequence.objects.get(name="invoice").next_value == before  # the number was given back
    assert not Invoice.objects.exclude(status="draft").exists()
