"""Thin HTTP layer of payments: payment methods, setup intents, payment intents and refunds, customer
balances and credit grants (scope `payments`), credit notes (scope `billing`), and `POST /invoices/{id}/pay`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from billing_site.api import ApiView, paginate, paginated_schema, validate_input
from billing_site.errors import InvalidRequest
from billing_site.tenancy import OPERATORS_ONLY, TENANT_SCOPED, TenantScope, tenant_filter
from customers.clocks import customer_now, customer_now_by_id, test_clock_get, test_clocks_enabled_check
from customers.models import Customer
from customers.selectors import customer_from_input, customer_get
from customers.serializers import TestClockAdvanceInput, TestClockOutput
from invoicing.documents.apis import PDF_RESPONSES, pdf_response
from invoicing.models import Invoice
from invoicing.selectors import invoice_get
from invoicing.serializers import InvoiceOutput, invoice_data
from payments import selectors
from payments.clocks import test_clock_advance
from payments.documents import credit_note_pdf, invoice_receipt_pdf
from payments.models import BalanceTransaction, CollectionAttempt, CreditGrant, PaymentIntent, PaymentMethod
from payments.serializers import (
    BalanceTransactionCreateInput,
    BalanceTransactionOutput,
    CreditGrantCreateInput,
    CreditGrantOutput,
    CreditNoteCreateInput,
    CreditNoteOutput,
    CustomerBalanceOutput,
    DisputeOutput,
    IntentCancelInput,
    PaymentIntentCaptureInput,
    PaymentIntentConfirmInput,
    PaymentIntentCreateInput,
    PaymentIntentOutput,
    PaymentMethodCreateInput,
    PaymentMethodOutput,
    RefundCreateInput,
    RefundOutput,
    SetupIntentConfirmInput,
    SetupIntentCreateInput,
    SetupIntentOutput,
)
from payments.services import collection, credit_notes, grants, intents, ledger, methods, refunds

_LIST = [OpenApiParameter("limit", int, description="1-100, default 20"), OpenApiParameter("cursor", str)]


def _method(method_id: str | None, tenant: TenantScope | None = None) -> PaymentMethod | None:
    if not method_id:
        return None
    method = tenant_filter(PaymentMethod.objects.filter(pk=method_id), tenant).first()
    if method is None:
        raise InvalidRequest(f"No such payment method: {method_id}", param="payment_method", code="resource_missing")
    return method


def _invoice(invoice_id: str | None) -> Invoice | None:
    if not invoice_id:
        return None
    invoice = Invoice.objects.filter(pk=invoice_id).first()
    if invoice is None:
        raise InvalidRequest(f"No such invoice: {invoice_id}", param="invoice", code="resource_missing")
    return invoice


def _intent(intent_id: str | None) -> PaymentIntent | None:
    if not intent_id:
        return None
    intent = PaymentIntent.objects.filter(pk=intent_id).first()
    if intent is None:
        raise InvalidRequest(f"No such payment intent: {intent_id}", param="payment_intent", code="resource_missing")
    return intent


# --- payment methods ------------------------------------------------------------------------------


class PaymentMethodListCreateApi(ApiView):
    scope_resource = "payments"
    tenant_access = {"GET": TENANT_SCOPED, "POST": TENANT_SCOPED}  # a tenant manages its own cards

    @extend_schema(
        operation_id="payment_methods_list",
        parameters=[*_LIST, OpenApiParameter("customer", str)],
        responses=paginated_schema(PaymentMethodOutput),
    )
    def get(self, request: Request) -> Response:
        queryset = selectors.payment_method_filtered(filters=request.query_params, tenant=self.tenant_scope)
        return paginate(request, queryset, PaymentMethodOutput)

    @extend_schema(
        operation_id="payment_methods_create", request=PaymentMethodCreateInput, responses={201: PaymentMethodOutput}
    )
    def post(self, request: Request) -> Response:
        data = validate_input(PaymentMethodCreateInput, request.data)
        customer = customer_from_input(customer_id=data["customer"], tenant=self.tenant_scope)
        method = methods.payment_method_create(
            customer=customer,
            token=data["token"],
            default=data["default"],
            now=customer_now(customer, timezone.now()),  # a test clock's customer lives on its clock
        )
        return Response(PaymentMethodOutput(method).data, status=status.HTTP_201_CREATED)


class PaymentMethodDetailApi(ApiView):
    scope_resource = "payments"
    tenant_access = {"GET": TENANT_SCOPED}

    @extend_schema(operation_id="payment_methods_retrieve", responses=PaymentMethodOutput)
    def get(self, request: Request, payment_method_id: str) -> Response:
        return Response(
            PaymentMethodOutput(
                selectors.payment_method_get(payment_method_id=payment_method_id, tenant=self.tenant_scope)
            ).data
        )


class PaymentMethodDetachApi(ApiView):
    scope_resource = "payments"
    tenant_access = {"POST": TENANT_SCOPED}

    @extend_schema(operation_id="payment_methods_detach", request=None, responses=PaymentMethodOutput)
    def post(self, request: Request, payment_method_id: str) -> Response:
        method = selectors.payment_method_get(payment_method_id=payment_method_id, tenant=self.tenant_scope)
        method = methods.payment_method_detach(payment_method=method, now=timezone.now())
        return Response(PaymentMethodOutput(method).data)


# --- setup intents --------------------------------------------------------------------------------


class SetupIntentCreateApi(ApiView):
    scope_resource = "payments"
    tenant_access = {"POST": TENANT_SCOPED}

    @extend_schema(
        operation_id="setup_intents_create", request=SetupIntentCreateInput, responses={201: SetupIntentOutput}
    )
    def post(self, request: Request) -> Response:
        data = validate_input(SetupIntentCreateInput, request.data)
        intent = methods.setup_intent_create(
            customer=customer_from_input(customer_id=data["customer"], tenant=self.tenant_scope),
            token=data["token"],
            usage=data["usage"],
            now=timezone.now(),
        )
        return Response(SetupIntentOutput(intent).data, status=status.HTTP_201_CREATED)


class SetupIntentDetailApi(ApiView):
    scope_resource = "payments"
    tenant_access = {"GET": TENANT_SCOPED}

    @extend_schema(operation_id="setup_intents_retrieve", responses=SetupIntentOutput)
    def get(self, request: Request, setup_intent_id: str) -> Response:
        return Response(
            SetupIntentOutput(
                selectors.setup_intent_get(setup_intent_id=setup_intent_id, tenant=self.tenant_scope)
            ).data
        )


class SetupIntentConfirmApi(ApiView):
    scope_resource = "payments"
    tenant_access = {"POST": TENANT_SCOPED}

    @extend_schema(operation_id="setup_intents_confirm", request=SetupIntentConfirmInput, responses=SetupIntentOutput)
    def post(self, request: Request, setup_intent_id: str) -> Response:
        intent = selectors.setup_intent_get(setup_intent_id=setup_intent_id, tenant=self.tenant_scope)
        data = validate_input(SetupIntentConfirmInput, request.data)
        intent = methods.setup_intent_confirm(
            setup_intent=intent,
            token=data["token"],
            payment_method=_method(data.get("payment_method"), self.tenant_scope),
            now=timezone.now(),
        )
        return Response(SetupIntentOutput(intent).data)


class SetupIntentCancelApi(ApiView):
    scope_resource = "payments"
    tenant_access = {"POST": TENANT_SCOPED}

    @extend_schema(operation_id="setup_intents_cancel", request=IntentCancelInput, responses=SetupIntentOutput)
    def post(self, request: Request, setup_intent_id: str) -> Response:
        intent = selectors.setup_intent_get(setup_intent_id=setup_intent_id, tenant=self.tenant_scope)
        data = validate_input(IntentCancelInput, request.data)
        intent = methods.setup_intent_cancel(
            setup_intent=intent, cancellation_reason=data["cancellation_reason"], now=timezone.now()
        )
        return Response(SetupIntentOutput(intent).data)


# --- payment intents ------------------------------------------------------------------------------


class PaymentIntentListCreateApi(ApiView):
    scope_resource = "payments"
    tenant_access = {"GET": TENANT_SCOPED, "POST": OPERATORS_ONLY}  # charging an amount is the operator's

    @extend_schema(
        operation_id="payment_intents_list",
        parameters=[
            *_LIST,
            OpenApiParameter("customer", str),
            OpenApiParameter("invoice", str),
            OpenApiParameter("status", str, enum=list(PaymentIntent.Status.values)),
        ],
        responses=paginated_schema(PaymentIntentOutput),
    )
    def get(self, request: Request) -> Response:
        queryset = selectors.payment_intent_filtered(filters=request.query_params, tenant=self.tenant_scope)
        return paginate(request, queryset, PaymentIntentOutput)

    @extend_schema(
        operation_id="payment_intents_create", request=PaymentIntentCreateInput, responses={201: PaymentIntentOutput}
    )
    def post(self, request: Request) -> Response:
        data = validate_input(PaymentIntentCreateInput, request.data)
        intent = intents.payment_intent_create(
            customer=customer_from_input(customer_id=data["customer"], tenant=self.tenant_scope),
            amount=data["amount"],
            currency=data["currency"],
            payment_method=_method(data.get("payment_method"), self.tenant_scope),
            capture_method=data["capture_method"],
            invoice=_invoice(data.get("invoice")),
            description=data["description"],
            now=timezone.now(),
        )
        return Response(PaymentIntentOutput(intent).data, status=status.HTTP_201_CREATED)


class PaymentIntentDetailApi(ApiView):
    scope_resource = "payments"
    tenant_access = {"GET": TENANT_SCOPED}

    @extend_schema(operation_id="payment_intents_retrieve", responses=PaymentIntentOutput)
    def get(self, request: Request, payment_intent_id: str) -> Response:
        return Response(
            PaymentIntentOutput(
                selectors.payment_intent_get(payment_intent_id=payment_intent_id, tenant=self.tenant_scope)
            ).data
        )


class PaymentIntentConfirmApi(ApiView):
    scope_resource = "payments"
    tenant_access = {"POST": TENANT_SCOPED}  # the customer completes its own payment (3-D Secure)

    @extend_schema(
        operation_id="payment_intents_confirm", request=PaymentIntentConfirmInput, responses=PaymentIntentOutput
    )
    def post(self, request: Request, payment_intent_id: str) -> Response:
        intent = selectors.payment_intent_get(payment_intent_id=payment_intent_id, tenant=self.tenant_scope)
        data = validate_input(PaymentIntentConfirmInput, request.data)
        intent = intents.payment_intent_confirm(
            payment_intent=intent,
            payment_method=_method(data.get("payment_method"), self.tenant_scope),
            now=timezone.now(),
        )
        return Response(PaymentIntentOutput(intent).data)


class PaymentIntentCaptureApi(ApiView):
    scope_resource = "payments"
    tenant_access = {"POST": OPERATORS_ONLY}

    @extend_schema(
        operation_id="payment_intents_capture", request=PaymentIntentCaptureInput, responses=PaymentIntentOutput
    )
    def post(self, request: Request, payment_intent_id: str) -> Response:
        intent = selectors.payment_intent_get(payment_intent_id=payment_intent_id, tenant=self.tenant_scope)
        data = validate_input(PaymentIntentCaptureInput, request.data)
        intent = intents.payment_intent_capture(payment_intent=intent, amount=data.get("amount"), now=timezone.now())
        return Response(PaymentIntentOutput(intent).data)


class PaymentIntentCancelApi(ApiView):
    scope_resource = "payments"
    tenant_access = {"POST": OPERATORS_ONLY}

    @extend_schema(operation_id="payment_intents_cancel", request=IntentCancelInput, responses=PaymentIntentOutput)
    def post(self, request: Request, payment_intent_id: str) -> Response:
        intent = selectors.payment_intent_get(payment_intent_id=payment_intent_id, tenant=self.tenant_scope)
        data = validate_input(IntentCancelInput, request.data)
        intent = intents.payment_intent_cancel(
            payment_intent=intent, cancellation_reason=data["cancellation_reason"], now=timezone.now()
        )
        return Response(PaymentIntentOutput(intent).data)


# --- refunds --------------------------------------------------------------------------------------


class RefundListCreateApi(ApiView):
    scope_resource = "payments"
    tenant_access = {"GET": TENANT_SCOPED, "POST": OPERATORS_ONLY}  # giving money back is the operator's

    @extend_schema(
        operation_id="refunds_list",
        parameters=[*_LIST, OpenApiParameter("payment_intent", str), OpenApiParameter("invoice", str)],
        responses=paginated_schema(RefundOutput),
    )
    def get(self, request: Request) -> Response:
        queryset = selectors.refund_filtered(filters=request.query_params, tenant=self.tenant_scope)
        return paginate(request, queryset, RefundOutput)

    @extend_schema(operation_id="refunds_create", request=RefundCreateInput, responses={201: RefundOutput})
    def post(self, request: Request) -> Response:
        data = validate_input(RefundCreateInput, request.data)
        refund = refunds.refund_create(
            payment_intent=_intent(data.get("payment_intent")),
            invoice=_invoice(data.get("invoice")),
            amount=data.get("amount"),
            reason=data["reason"],
            now=timezone.now(),
        )
        return Response(RefundOutput(refund).data, status=status.HTTP_201_CREATED)


class RefundDetailApi(ApiView):
    scope_resource = "payments"
    tenant_access = {"GET": TENANT_SCOPED}

    @extend_schema(operation_id="refunds_retrieve", responses=RefundOutput)
    def get(self, request: Request, refund_id: str) -> Response:
        return Response(RefundOutput(selectors.refund_get(refund_id=refund_id, tenant=self.tenant_scope)).data)


# --- disputes (read-only: they come from the provider's webhooks) ---------------------------------


class DisputeListApi(ApiView):
    scope_resource = "payments"
    tenant_access = {"GET": OPERATORS_ONLY}  # chargebacks are handled by the operator with the provider

    @extend_schema(
        operation_id="disputes_list",
        parameters=[
            *_LIST,
            OpenApiParameter("customer", str),
            OpenApiParameter("payment_intent", str),
            OpenApiParameter("invoice", str),
            OpenApiParameter("status", str),
        ],
        responses=paginated_schema(DisputeOutput),
    )
    def get(self, request: Request) -> Response:
        return paginate(request, selectors.dispute_list(filters=request.query_params), DisputeOutput)


class DisputeDetailApi(ApiView):
    scope_resource = "payments"
    tenant_access = {"GET": OPERATORS_ONLY}

    @extend_schema(operation_id="disputes_retrieve", responses=DisputeOutput)
    def get(self, request: Request, dispute_id: str) -> Response:
        return Response(DisputeOutput(selectors.dispute_get(dispute_id=dispute_id)).data)


def _currency_or_customers(data: Mapping[str, Any], customer: Customer) -> str:
    currency = data.get("currency") or customer.currency
    if not currency:
        raise InvalidRequest(
            "currency is required: the customer has no default currency.", param="currency", code="parameter_missing"
        )
    return currency


# --- Filters and selectors ------------------------------------------------------------------------


# --- Balances -------------------------------------------------------------------------------------


class CustomerBalanceApi(ApiView):
    scope_resource = "payments"
    tenant_access = {"GET": TENANT_SCOPED}

    @extend_schema(operation_id="customer_balance_retrieve", responses=CustomerBalanceOutput)
    def get(self, request: Request, customer_id: str) -> Response:
        customer = customer_get(customer_id=customer_id, tenant=self.tenant_scope)
        body = {
            "object": "customer_balance",
            "customer": customer.id,
            "balances": [{"currency": b.currency, "balance": b.balance} for b in selectors.balance_list(customer)],
        }
        return Response(CustomerBalanceOutput(body).data)


class CustomerBalanceTransactionListCreateApi(ApiView):
    scope_resource = "payments"
    tenant_access = {"GET": TENANT_SCOPED, "POST": OPERATORS_ONLY}

    @extend_schema(
        operation_id="customer_balance_transactions_list",
        parameters=[*_LIST, OpenApiParameter("currency", str), OpenApiParameter("type", str)],
        responses=paginated_schema(BalanceTransactionOutput),
    )
    def get(self, request: Request, customer_id: str) -> Response:
        customer = customer_get(customer_id=customer_id, tenant=self.tenant_scope)
        queryset = selectors.balance_transaction_list(customer=customer, filters=request.query_params)
        return paginate(request, queryset, BalanceTransactionOutput)

    @extend_schema(
        operation_id="customer_balance_transactions_create",
        request=BalanceTransactionCreateInput,
        responses={201: BalanceTransactionOutput},
    )
    def post(self, request: Request, customer_id: str) -> Response:
        customer = customer_get(customer_id=customer_id, tenant=self.tenant_scope)
        data = validate_input(BalanceTransactionCreateInput, request.data)
        txn = ledger.balance_adjust(
            customer=customer,
            amount=data["amount"],
            currency=_currency_or_customers(data, customer),
            type=BalanceTransaction.Type.ADJUSTMENT,
            description=data.get("description", ""),
            now=timezone.now(),
        )
        return Response(BalanceTransactionOutput(txn).data, status=status.HTTP_201_CREATED)


# --- Credit grants --------------------------------------------------------------------------------


class CreditGrantListCreateApi(ApiView):
    scope_resource = "payments"
    tenant_access = {"GET": TENANT_SCOPED, "POST": OPERATORS_ONLY}

    @extend_schema(
        operation_id="credit_grants_list",
        parameters=[
            *_LIST,
            OpenApiParameter("customer", str),
            OpenApiParameter("currency", str),
            OpenApiParameter("status", str, enum=list(CreditGrant.Status.values)),
        ],
        responses=paginated_schema(CreditGrantOutput),
    )
    def get(self, request: Request) -> Response:
        queryset = selectors.credit_grant_list(filters=request.query_params, tenant=self.tenant_scope)
        return paginate(request, queryset, CreditGrantOutput)

    @extend_schema(
        operation_id="credit_grants_create", request=CreditGrantCreateInput, responses={201: CreditGrantOutput}
    )
    def post(self, request: Request) -> Response:
        data = validate_input(CreditGrantCreateInput, request.data)
        customer = customer_from_input(customer_id=data["customer"])
        grant = grants.credit_grant_create(
            customer=customer,
            amount=data["amount"],
            currency=_currency_or_customers(data, customer),
            priority=data.get("priority", 50),
            effective_at=data.get("effective_at"),
            expires_at=data.get("expires_at"),
            meters=data.get("meters"),
            prices=data.get("prices"),
            name=data.get("name", ""),
            metadata={k: v for k, v in data.get("metadata", {}).items() if v},
            now=timezone.now(),
        )
        return Response(
            CreditGrantOutput(selectors.credit_grant_get(credit_grant_id=grant.id)).data, status=status.HTTP_201_CREATED
        )


class CreditGrantDetailApi(ApiView):
    scope_resource = "payments"
    tenant_access = {"GET": TENANT_SCOPED}

    @extend_schema(operation_id="credit_grants_retrieve", responses=CreditGrantOutput)
    def get(self, request: Request, credit_grant_id: str) -> Response:
        return Response(
            CreditGrantOutput(
                selectors.credit_grant_get(credit_grant_id=credit_grant_id, tenant=self.tenant_scope)
            ).data
        )


class CreditGrantVoidApi(ApiView):
    scope_resource = "payments"
    tenant_access = {"POST": OPERATORS_ONLY}

    @extend_schema(operation_id="credit_grants_void", request=None, responses=CreditGrantOutput)
    def post(self, request: Request, credit_grant_id: str) -> Response:
        grant = grants.credit_grant_void(
            grant=selectors.credit_grant_get(credit_grant_id=credit_grant_id, tenant=self.tenant_scope),
            now=timezone.now(),
        )
        return Response(CreditGrantOutput(selectors.credit_grant_get(credit_grant_id=grant.id)).data)


# --- Credit notes ---------------------------------------------------------------------------------


class CreditNoteListCreateApi(ApiView):
    scope_resource = "billing"
    tenant_access = {"GET": TENANT_SCOPED, "POST": OPERATORS_ONLY}

    @extend_schema(
        operation_id="credit_notes_list",
        parameters=[
            *_LIST,
            OpenApiParameter("invoice", str),
            OpenApiParameter("customer", str),
            OpenApiParameter("status", str, enum=["issued", "void"]),
        ],
        responses=paginated_schema(CreditNoteOutput),
    )
    def get(self, request: Request) -> Response:
        return paginate(
            request,
            selectors.credit_note_list(filters=request.query_params, tenant=self.tenant_scope),
            CreditNoteOutput,
        )

    @extend_schema(operation_id="credit_notes_create", request=CreditNoteCreateInput, responses={201: CreditNoteOutput})
    def post(self, request: Request) -> Response:
        data = validate_input(CreditNoteCreateInput, request.data)
        invoice = Invoice.objects.filter(pk=data["invoice"]).first()
        if invoice is None:
            raise InvalidRequest(f"No such invoice: {data['invoice']}", param="invoice", code="resource_missing")
        note = credit_notes.credit_note_create(
            invoice=invoice,
            lines=data.get("lines"),
            amount=data.get("amount"),
            reason=data.get("reason", ""),
            memo=data.get("memo", ""),
            refund_amount=data["refund_amount"],
            credit_amount=data["credit_amount"],
            out_of_band_amount=data["out_of_band_amount"],
            now=timezone.now(),
        )
        body = CreditNoteOutput(selectors.credit_note_get(credit_note_id=note.id)).data
        return Response(body, status=status.HTTP_201_CREATED)


class CreditNoteDetailApi(ApiView):
    scope_resource = "billing"
    tenant_access = {"GET": TENANT_SCOPED}

    @extend_schema(operation_id="credit_notes_retrieve", responses=CreditNoteOutput)
    def get(self, request: Request, credit_note_id: str) -> Response:
        return Response(
            CreditNoteOutput(selectors.credit_note_get(credit_note_id=credit_note_id, tenant=self.tenant_scope)).data
        )


class CreditNoteVoidApi(ApiView):
    scope_resource = "billing"
    tenant_access = {"POST": OPERATORS_ONLY}

    @extend_schema(operation_id="credit_notes_void", request=None, responses=CreditNoteOutput)
    def post(self, request: Request, credit_note_id: str) -> Response:
        note = selectors.credit_note_get(credit_note_id=credit_note_id, tenant=self.tenant_scope)
        note = credit_notes.credit_note_void(credit_note=note, now=timezone.now())
        return Response(CreditNoteOutput(selectors.credit_note_get(credit_note_id=note.id)).data)


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
    tenant_access = {"POST": TENANT_SCOPED}  # a tenant pays its own invoice

    @extend_schema(
        operation_id="invoices_pay",
        request=None,
        responses=inline_serializer("InvoicePayment", {"invoice": InvoiceOutput(), "attempt": _AttemptOutput}),
    )
    def post(self, request: Request, invoice_id: str) -> Response:
        invoice = invoice_get(invoice_id=invoice_id, tenant=self.tenant_scope)
        now = customer_now_by_id(invoice.customer_id, timezone.now())
        result = collection.invoice_collect(invoice=invoice, trigger=CollectionAttempt.Trigger.API, now=now)
        fresh = invoice_get(invoice_id=invoice_id, tenant=self.tenant_scope)
        return Response({"invoice": InvoiceOutput(invoice_data(fresh)).data, "attempt": attempt_data(result.attempt)})


# --- Documents ------------------------------------------------------------------------------------


class CreditNotePdfApi(ApiView):
    # Credit notes are invoice documents: the billing scope, like the invoice PDF.
    scope_resource = "billing"
    tenant_access = {"GET": TENANT_SCOPED}

    @extend_schema(
        operation_id="credit_notes_pdf",
        summary="Download a credit note as PDF",
        description="Rendered on its first download and stored: every later download returns the same bytes.",
        responses=PDF_RESPONSES,
    )
    def get(self, request: Request, credit_note_id: str) -> HttpResponse:
        note = selectors.credit_note_get(credit_note_id=credit_note_id, tenant=self.tenant_scope)
        return pdf_response(credit_note_pdf(credit_note=note, now=timezone.now()))


class InvoiceReceiptApi(ApiView):
    scope_resource = "billing"
    tenant_access = {"GET": TENANT_SCOPED}

    @extend_schema(
        operation_id="invoices_receipt",
        summary="Download the receipt of a paid invoice as PDF",
        description=(
            "How the invoice was paid (credit grants, balance, payments) with its refunds and credit notes. "
            "Rendered on its first download and stored. 409 `invoice_not_paid` until the invoice is paid."
        ),
        responses={**PDF_RESPONSES, 409: OpenApiResponse(description="The invoice is not paid (`invoice_not_paid`).")},
    )
    def get(self, request: Request, invoice_id: str) -> HttpResponse:
        invoice = invoice_get(invoice_id=invoice_id, tenant=self.tenant_scope)
        return pdf_response(invoice_receipt_pdf(invoice=invoice, now=timezone.now()))


# --- Test clocks: the advance (the clock itself is in customers) ------------------------------------


class TestClockAdvanceApi(ApiView):
    scope_resource = "billing"
    tenant_access = {"POST": OPERATORS_ONLY}

    @extend_schema(operation_id="test_clocks_advance", request=TestClockAdvanceInput, responses=TestClockOutput)
    def post(self, request: Request, clock_id: str) -> Response:
        test_clocks_enabled_check()
        clock = test_clock_get(clock_id=clock_id)
        data = validate_input(TestClockAdvanceInput, request.data)
        clock = test_clock_advance(clock=clock, frozen_time=data["frozen_time"], now=timezone.now())
        return Response(TestClockOutput(clock).data)
