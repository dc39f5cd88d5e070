"""`POST /invoices/{id}/pay`: run the collection waterfall on one invoice now."""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from billing_site.api import ApiView
from invoicing.selectors import invoice_get
from invoicing.serializers import InvoiceOutput, invoice_data
from payments.collection import invoice_collect
from payments.models import CollectionAttempt


def attempt_data(attempt: CollectionAttempt) -> dict[str, Any]:
    return {
        "success": attempt.success,
        "credit_used": attempt.credit_used,
        "balance_used": attempt.balance_used,
        "provider_used": attempt.provider_used,
        "amount_charged": attempt.amount_charged,
        "payment_intent": attempt.payment_intent_id,
        "provider_ref": attempt.provider_ref or None,
        "error": attempt.error or None,
        "created_at": attempt.created_at,
    }


_AttemptOutput = inline_serializer(
    "CollectionAttempt",
    {
        "success": serializers.BooleanField(),
        "credit_used": serializers.IntegerField(),
        "balance_used": serializers.IntegerField(),
        "provider_used": serializers.IntegerField(),
        "amount_charged": serializers.IntegerField(),
        "payment_intent": serializers.CharField(allow_null=True),
        "provider_ref": serializers.CharField(allow_null=True),
        "error": serializers.CharField(allow_null=True),
        "created_at": serializers.DateTimeField(),
    },
)


class InvoicePayApi(ApiView):
    # It moves money: the payments scope, not billing.
    required_scopes = {"POST": "payments:write"}

    @extend_schema(
        operation_id="invoices_pay",
        request=None,
        responses=inline_serializer("InvoicePayment", {"invoice": InvoiceOutput(), "attempt": _AttemptOutput}),
    )
    def post(self, request: Request, invoice_id: str) -> Response:
        invoice = invoice_get(invoice_id=invoice_id)
        result = invoice_collect(invoice=invoice, trigger=CollectionAttempt.Trigger.API, now=timezone.now())
        fresh = invoice_get(invoice_id=invoice_id)
        return Response({"invoice": InvoiceOutput(invoice_data(fresh)).data, "attempt": attempt_data(result.attempt)})
