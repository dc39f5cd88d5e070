"""Thin HTTP layer for payment methods, setup intents, payment intents and refunds (scope `payments`)."""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from billing_site.api import ApiView, paginate, paginated_schema, validate_input
from billing_site.errors import InvalidRequest
from billing_site.selectors import apply_filters
from customers.selectors import customer_from_input
from invoicing.models import Invoice
from payments import intents, methods, refunds
from payments.models import PaymentIntent, PaymentMethod
from payments.serializers_intents import (
    IntentCancelInput,
    PaymentIntentCaptureInput,
    PaymentIntentConfirmInput,
    PaymentIntentCreateInput,
    PaymentIntentFilter,
    PaymentIntentOutput,
    PaymentMethodCreateInput,
    PaymentMethodFilter,
    PaymentMethodOutput,
    RefundCreateInput,
    RefundFilter,
    RefundOutput,
    SetupIntentConfirmInput,
    SetupIntentCreateInput,
    SetupIntentOutput,
)

_LIST = [OpenApiParameter("limit", int, description="1-100, default 20"), OpenApiParameter("cursor", str)]


def _method(method_id: str | None) -> PaymentMethod | None:
    if not method_id:
        return None
    method = PaymentMethod.objects.filter(pk=method_id).first()
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

    @extend_schema(
        operation_id="payment_methods_list",
        parameters=[*_LIST, OpenApiParameter("customer", str)],
        responses=paginated_schema(PaymentMethodOutput),
    )
    def get(self, request: Request) -> Response:
        queryset = apply_filters(PaymentMethodFilter, request.query_params, methods.payment_method_list())
        return paginate(request, queryset, PaymentMethodOutput)

    @extend_schema(
        operation_id="payment_methods_create", request=PaymentMethodCreateInput, responses={201: PaymentMethodOutput}
    )
    def post(self, request: Request) -> Response:
        data = validate_input(PaymentMethodCreateInput, request.data)
        method = methods.payment_method_create(
            customer=customer_from_input(customer_id=data["customer"]),
            token=data["token"],
            default=data["default"],
            now=timezone.now(),
        )
        return Response(PaymentMethodOutput(method).data, status=status.HTTP_201_CREATED)


class PaymentMethodDetailApi(ApiView):
    scope_resource = "payments"

    @extend_schema(operation_id="payment_methods_retrieve", responses=PaymentMethodOutput)
    def get(self, request: Request, payment_method_id: str) -> Response:
        return Response(PaymentMethodOutput(methods.payment_method_get(payment_method_id=payment_method_id)).data)


class PaymentMethodDetachApi(ApiView):
    scope_resource = "payments"

    @extend_schema(operation_id="payment_methods_detach", request=None, responses=PaymentMethodOutput)
    def post(self, request: Request, payment_method_id: str) -> Response:
        method = methods.payment_method_get(payment_method_id=payment_method_id)
        method = methods.payment_method_detach(payment_method=method, now=timezone.now())
        return Response(PaymentMethodOutput(method).data)


# --- setup intents --------------------------------------------------------------------------------


class SetupIntentCreateApi(ApiView):
    scope_resource = "payments"

    @extend_schema(
        operation_id="setup_intents_create", request=SetupIntentCreateInput, responses={201: SetupIntentOutput}
    )
    def post(self, request: Request) -> Response:
        data = validate_input(SetupIntentCreateInput, request.data)
        intent = methods.setup_intent_create(
            customer=customer_from_input(customer_id=data["customer"]),
            token=data["token"],
            usage=data["usage"],
            now=timezone.now(),
        )
        return Response(SetupIntentOutput(intent).data, status=status.HTTP_201_CREATED)


class SetupIntentDetailApi(ApiView):
    scope_resource = "payments"

    @extend_schema(operation_id="setup_intents_retrieve", responses=SetupIntentOutput)
    def get(self, request: Request, setup_intent_id: str) -> Response:
        return Response(SetupIntentOutput(methods.setup_intent_get(setup_intent_id=setup_intent_id)).data)


class SetupIntentConfirmApi(ApiView):
    scope_resource = "payments"

    @extend_schema(operation_id="setup_intents_confirm", request=SetupIntentConfirmInput, responses=SetupIntentOutput)
    def post(self, request: Request, setup_intent_id: str) -> Response:
        intent = methods.setup_intent_get(setup_intent_id=setup_intent_id)
        data = validate_input(SetupIntentConfirmInput, request.data)
        intent = methods.setup_intent_confirm(
            setup_intent=intent,
            token=data["token"],
            payment_method=_method(data.get("payment_method")),
            now=timezone.now(),
        )
        return Response(SetupIntentOutput(intent).data)


class SetupIntentCancelApi(ApiView):
    scope_resource = "payments"

    @extend_schema(operation_id="setup_intents_cancel", request=IntentCancelInput, responses=SetupIntentOutput)
    def post(self, request: Request, setup_intent_id: str) -> Response:
        intent = methods.setup_intent_get(setup_intent_id=setup_intent_id)
        data = validate_input(IntentCancelInput, request.data)
        intent = methods.setup_intent_cancel(
            setup_intent=intent, cancellation_reason=data["cancellation_reason"], now=timezone.now()
        )
        return Response(SetupIntentOutput(intent).data)


# --- payment intents ------------------------------------------------------------------------------


class PaymentIntentListCreateApi(ApiView):
    scope_resource = "payments"

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
        queryset = apply_filters(PaymentIntentFilter, request.query_params, intents.payment_intent_list())
        return paginate(request, queryset, PaymentIntentOutput)

    @extend_schema(
        operation_id="payment_intents_create", request=PaymentIntentCreateInput, responses={201: PaymentIntentOutput}
    )
    def post(self, request: Request) -> Response:
        data = validate_input(PaymentIntentCreateInput, request.data)
        intent = intents.payment_intent_create(
            customer=customer_from_input(customer_id=data["customer"]),
            amount=data["amount"],
            currency=data["currency"],
            payment_method=_method(data.get("payment_method")),
            capture_method=data["capture_method"],
            invoice=_invoice(data.get("invoice")),
            description=data["description"],
            now=timezone.now(),
        )
        return Response(PaymentIntentOutput(intent).data, status=status.HTTP_201_CREATED)


class PaymentIntentDetailApi(ApiView):
    scope_resource = "payments"

    @extend_schema(operation_id="payment_intents_retrieve", responses=PaymentIntentOutput)
    def get(self, request: Request, payment_intent_id: str) -> Response:
        return Response(PaymentIntentOutput(intents.payment_intent_get(payment_intent_id=payment_intent_id)).data)


class PaymentIntentConfirmApi(ApiView):
    scope_resource = "payments"

    @extend_schema(
        operation_id="payment_intents_confirm", request=PaymentIntentConfirmInput, responses=PaymentIntentOutput
    )
    def post(self, request: Request, payment_intent_id: str) -> Response:
        intent = intents.payment_intent_get(payment_intent_id=payment_intent_id)
        data = validate_input(PaymentIntentConfirmInput, request.data)
        intent = intents.payment_intent_confirm(
            payment_intent=intent, payment_method=_method(data.get("payment_method")), now=timezone.now()
        )
        return Response(PaymentIntentOutput(intent).data)


class PaymentIntentCaptureApi(ApiView):
    scope_resource = "payments"

    @extend_schema(
        operation_id="payment_intents_capture", request=PaymentIntentCaptureInput, responses=PaymentIntentOutput
    )
    def post(self, request: Request, payment_intent_id: str) -> Response:
        intent = intents.payment_intent_get(payment_intent_id=payment_intent_id)
        data = validate_input(PaymentIntentCaptureInput, request.data)
        intent = intents.payment_intent_capture(payment_intent=intent, amount=data.get("amount"), now=timezone.now())
        return Response(PaymentIntentOutput(intent).data)


class PaymentIntentCancelApi(ApiView):
    scope_resource = "payments"

    @extend_schema(operation_id="payment_intents_cancel", request=IntentCancelInput, responses=PaymentIntentOutput)
    def post(self, request: Request, payment_intent_id: str) -> Response:
        intent = intents.payment_intent_get(payment_intent_id=payment_intent_id)
        data = validate_input(IntentCancelInput, request.data)
        intent = intents.payment_intent_cancel(
            payment_intent=intent, cancellation_reason=data["cancellation_reason"], now=timezone.now()
        )
        return Response(PaymentIntentOutput(intent).data)


# --- refunds --------------------------------------------------------------------------------------


class RefundListCreateApi(ApiView):
    scope_resource = "payments"

    @extend_schema(
        operation_id="refunds_list",
        parameters=[*_LIST, OpenApiParameter("payment_intent", str), OpenApiParameter("invoice", str)],
        responses=paginated_schema(RefundOutput),
    )
    def get(self, request: Request) -> Response:
        queryset = apply_filters(RefundFilter, request.query_params, refunds.refund_list())
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

    @extend_schema(operation_id="refunds_retrieve", responses=RefundOutput)
    def get(self, request: Request, refund_id: str) -> Response:
        return Response(RefundOutput(refunds.refund_get(refund_id=refund_id)).data)
