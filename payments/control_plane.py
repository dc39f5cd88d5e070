"""What offboarding means for a tenant's open invoices (a step registered with customers' control plane).

It runs in the offboarding's transaction, after subscriptions ended every subscription (so the final
invoices exist) and before the customer is soft-deleted. Per CONTROL_PLANE_OFFBOARD_INVOICES:
- `collect`: every open charge_automatically invoice with something due is attempted at once (dunning
  retries waiting for later are brought forward) by the collection task, queued after the commit: the
  provider is never called inside the transaction. This one collection may charge the customer the
  offboarding deletes (what the tenant owes on leaving); a deleted customer is never charged again, so a
  decline is not retried by dunning: the invoice stays open for the operator.
- `leave_open`: automatic charges stop (no next attempt); the invoices stay open for the operator
  (`POST /invoices/{id}/pay`, void, mark uncollectible).
send_invoice invoices stay open either way: the tenant pays them.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from billing_site.tasks import enqueue_each
from customers.control_plane import ControlPlaneRequest, control_plane_step_register
from customers.models import Customer
from invoicing.models import Invoice


def tenant_offboarding_invoices(*, request: ControlPlaneRequest, customer: Customer) -> dict[str, Any]:
    from payments.tasks import invoice_collect_task

    open_invoices = Invoice.objects.filter(customer=customer, status=Invoice.Status.OPEN)
    open_ids = list(open_invoices.order_by("id").values_list("id", flat=True))
    chargeable = open_invoices.filter(collection_method="charge_automatically", amount_remaining__gt=0)
    if settings.CONTROL_PLANE_OFFBOARD_INVOICES == "leave_open":
        chargeable.update(next_payment_attempt=None)
        return {"open_invoices": open_ids, "invoices_collecting": []}
    collecting = list(chargeable.order_by("id").values_list("id", flat=True))
    chargeable.update(next_payment_attempt=request.now)
    enqueue_each(invoice_collect_task, [(invoice_id, request.now.isoformat(), True) for invoice_id in collecting])
    return {"open_invoices": open_ids, "invoices_collecting": collecting}


def register() -> None:
    control_plane_step_register("offboardingRequest", tenant_offboarding_invoices, when="before")
