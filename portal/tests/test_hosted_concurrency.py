"""Several submissions of the pay form at once (a double click that beat the script, two tabs): the
invoice is charged once, whoever wins."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from django.utils import timezone

from billing_site.errors import ApiError
from invoicing.models import Invoice
from payments.processors.sandbox import sandbox_charges
from payments.tests.factories import open_invoice
from portal.links import hosted_invoice_link_regenerate
from portal.services import hosted_invoice_pay


def _race(link, nonces: list[str]) -> list[str]:
    outcomes: list[str] = []
    barrier = threading.Barrier(len(nonces))

    def run(nonce: str) -> None:
        try:
            barrier.wait()
            intent = hosted_invoice_pay(link=link, token="tok_visa", nonce=nonce, now=timezone.now())
            outcomes.append(intent.status if intent is not None else "duplicate")
        except ApiError as exc:
            outcomes.append(exc.code)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(nonce,)) for nonce in nonces]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("same_form", [True, False], ids=["one-form-sent-6-times", "6-forms"])
def test_concurrent_submissions_charge_once(same_form):
    invoice = open_invoice(amount=1800)
    link = hosted_invoice_link_regenerate(invoice=invoice, now=timezone.now())
    nonces = ["a" * 32] * 6 if same_form else [f"{i}" * 32 for i in range(6)]
    outcomes = _race(link, nonces)
    assert sandbox_charges() == 1, outcomes
    assert len(outcomes) == 6 and outcomes.count("succeeded") >= 1
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_paid) == (Invoice.Status.PAID, 1800)
