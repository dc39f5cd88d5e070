"""Thin HTTP layer for subscriptions, invoices and tax rates."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from billing_site.api import ApiView, paginate, paginated_schema, validate_input
from billing_site.errors import InvalidRequest
from customers.selectors import customer_from_input
from invoicing import billing, renewal, selectors, services
from invoicing.billing import ItemSpec
from invoicing.serializers import (
    CancelInput,
    ChangeInput,
    InvoiceOutput,
    SubscriptionCreateInput,
    SubscriptionOutput,
    TaxRateCreateInput,
    TaxRateOutput,
    TaxRateUpdateInput,
    draft_data,
    invoice_data,
)
from subscriptions.models import Coupon, Price

_LIST = [OpenApiParameter("limit", int), OpenApiParameter("cursor", str)]


def _item_specs(items: list[dict[str, Any]]) -> list[ItemSpec]:
    prices = {p.id: p for p in Price.objects.select_related("meter").filter(pk__in=[i["price"] for i in items])}
    specs = []
    for index, item in enumerate(items):
        price = prices.get(item["price"])
        if price is None:
            raise InvalidRequest(
                f"No such price: {item['price']}", param=f"items[{index}].price", code="resource_missing"
            )
        specs.append(ItemSpec(price=price, quantity=item.get("quantity")))
    return specs


class _InvoiceSerializer(serializers.BaseSerializer):
    def to_representation(self, instance: Any) -> dict[str, Any]:
        return InvoiceOutput(invoice_data(instance)).data


class SubscriptionListCreateApi(ApiView):
    scope_resource = "billing"

    @extend_schema(
        operation_id="subscriptions_list",
        parameters=[*_LIST, OpenApiParameter("customer", str), OpenApiParameter("status", str)],
        responses=paginated_schema(SubscriptionOutput),
    )
    def get(self, request: Request) -> Response:
        return paginate(request, selectors.subscription_list(filters=request.query_params), SubscriptionOutput)

    @extend_schema(
        operation_id="subscriptions_create", request=SubscriptionCreateInput, responses={201: SubscriptionOutput}
    )
    def post(self, request: Request) -> Response:
        data = validate_input(SubscriptionCreateInput, request.data)
        now = timezone.now()
        customer = customer_from_input(customer_id=data["customer"])
        coupon = None
        if data.get("coupon"):
            coupon = Coupon.objects.filter(pk=data["coupon"]).first()
            if coupon is None:
                raise InvalidRequest(f"No such coupon: {data['coupon']}", param="coupon", code="resource_missing")
        start = data.get("start_date")
        trial_end = data.get("trial_end")
        if "trial_days" in data:
            trial_end = (start or now) + timedelta(days=data["trial_days"])
        sub, invoice = billing.subscription_create(
            customer=customer,
            items=_item_specs(data["items"]),
            now=now,
            start_date=start,
            trial_end=trial_end,
            billing_cycle_anchor=data.get("billing_cycle_anchor"),
            collection_method=data.get("collection_method", "charge_automatically"),
            days_until_due=data.get("days_until_due"),
            coupon=coupon,
            metadata={k: v for k, v in data.get("metadata", {}).items() if v},
        )
        body = SubscriptionOutput(sub).data
        body["latest_invoice"] = invoice.id if invoice else None
        return Response(body, status=status.HTTP_201_CREATED)


class SubscriptionDetailApi(ApiView):
    scope_resource = "billing"

    @extend_schema(operation_id="subscriptions_retrieve", responses=SubscriptionOutput)
    def get(self, request: Request, subscription_id: str) -> Response:
        return Response(SubscriptionOutput(selectors.subscription_get(subscription_id=subscription_id)).data)


class SubscriptionCancelApi(ApiView):
    scope_resource = "billing"

    @extend_schema(operation_id="subscriptions_cancel", request=CancelInput, responses=SubscriptionOutput)
    def post(self, request: Request, subscription_id: str) -> Response:
        sub = selectors.subscription_get(subscription_id=subscription_id)
        data = validate_input(CancelInput, request.data)
        sub, invoice = billing.subscription_cancel(
            subscription=sub, at_period_end=data["at_period_end"], prorate=data["prorate"], now=timezone.now()
        )
        body = SubscriptionOutput(sub).data
        body["latest_invoice"] = invoice.id if invoice else None
        return Response(body)


class SubscriptionReactivateApi(ApiView):
    scope_resource = "billing"

    @extend_schema(operation_id="subscriptions_reactivate", request=None, responses=SubscriptionOutput)
    def post(self, request: Request, subscription_id: str) -> Response:
        sub = selectors.subscription_get(subscription_id=subscription_id)
        sub = billing.subscription_reactivate(subscription=sub, now=timezone.now())
        return Response(SubscriptionOutput(sub).data)


class SubscriptionChangeApi(ApiView):
    scope_resource = "billing"

    @extend_schema(operation_id="subscriptions_change", request=ChangeInput, responses=SubscriptionOutput)
    def post(self, request: Request, subscription_id: str) -> Response:
        sub = selectors.subscription_get(subscription_id=subscription_id)
        data = validate_input(ChangeInput, request.data)
        sub, invoice = billing.subscription_change(
            subscription=sub,
            items=_item_specs(data["items"]),
            proration_behavior=data["proration_behavior"],
            now=timezone.now(),
        )
        body = SubscriptionOutput(sub).data
        body["latest_invoice"] = invoice.id if invoice else None
        return Response(body)


class UpcomingInvoiceApi(ApiView):
    scope_resource = "billing"

    @extend_schema(operation_id="subscriptions_upcoming_invoice", responses=InvoiceOutput)
    def get(self, request: Request, subscription_id: str) -> Response:
        sub = selectors.subscription_get(subscription_id=subscription_id)
        draft = renewal.upcoming_invoice(subscription=sub, now=timezone.now())
        return Response(InvoiceOutput(draft_data(draft)).data)


class InvoiceListApi(ApiView):
    scope_resource = "billing"

    @extend_schema(
        operation_id="invoices_list",
        parameters=[
            *_LIST,
            OpenApiParameter("customer", str),
            OpenApiParameter("subscription", str),
            OpenApiParameter("status", str),
        ],
        responses=paginated_schema(InvoiceOutput),
    )
    def get(self, request: Request) -> Response:
        return paginate(request, selectors.invoice_list(filters=request.query_params), _InvoiceSerializer)


class InvoiceDetailApi(ApiView):
    scope_resource = "billing"

    @extend_schema(operation_id="invoices_retrieve", responses=InvoiceOutput)
    def get(self, request: Request, invoice_id: str) -> Response:
        return Response(InvoiceOutput(invoice_data(selectors.invoice_get(invoice_id=invoice_id))).data)


class _InvoiceActionApi(ApiView):
    scope_resource = "billing"
    transition: Any = None

    def post(self, request: Request, invoice_id: str) -> Response:
        invoice = selectors.invoice_get(invoice_id=invoice_id)
        type(self).transition(invoice=invoice, now=timezone.now())
        return Response(InvoiceOutput(invoice_data(selectors.invoice_get(invoice_id=invoice_id))).data)


class InvoiceFinalizeApi(_InvoiceActionApi):
    transition = services.invoice_finalize

    @extend_schema(operation_id="invoices_finalize", request=None, responses=InvoiceOutput)
    def post(self, request: Request, invoice_id: str) -> Response:
        return super().post(request, invoice_id)


class InvoiceVoidApi(_InvoiceActionApi):
    transition = services.invoice_void

    @extend_schema(operation_id="invoices_void", request=None, responses=InvoiceOutput)
    def post(self, request: Request, invoice_id: str) -> Response:
        return super().post(request, invoice_id)


class InvoiceMarkUncollectibleApi(_InvoiceActionApi):
    transition = services.invoice_mark_uncollectible

    @extend_schema(operation_id="invoices_mark_uncollectible", request=None, responses=InvoiceOutput)
    def post(self, request: Request, invoice_id: str) -> Response:
        return super().post(request, invoice_id)


class TaxRateListCreateApi(ApiView):
    scope_resource = "billing"

    @extend_schema(
        operation_id="tax_rates_list",
        parameters=[
            *_LIST,
            OpenApiParameter("country", str),
            OpenApiParameter("state", str),
            OpenApiParameter("active", bool),
        ],
        responses=paginated_schema(TaxRateOutput),
    )
    def get(self, request: Request) -> Response:
        return paginate(request, selectors.tax_rate_list(filters=request.query_params), TaxRateOutput)

    @extend_schema(operation_id="tax_rates_create", request=TaxRateCreateInput, responses={201: TaxRateOutput})
    def post(self, request: Request) -> Response:
        data = validate_input(TaxRateCreateInput, request.data)
        rate = services.tax_rate_create(**data, now=timezone.now())
        return Response(TaxRateOutput(rate).data, status=status.HTTP_201_CREATED)


class TaxRateDetailApi(ApiView):
    scope_resource = "billing"

    @extend_schema(operation_id="tax_rates_retrieve", responses=TaxRateOutput)
    def get(self, request: Request, tax_rate_id: str) -> Response:
        return Response(TaxRateOutput(selectors.tax_rate_get(tax_rate_id=tax_rate_id)).data)

    @extend_schema(operation_id="tax_rates_update", request=TaxRateUpdateInput, responses=TaxRateOutput)
    def patch(self, request: Request, tax_rate_id: str) -> Response:
        rate = selectors.tax_rate_get(tax_rate_id=tax_rate_id)
        changes = validate_input(TaxRateUpdateInput, request.data, partial=True)
        return Response(TaxRateOutput(services.tax_rate_update(rate=rate, changes=changes, now=timezone.now())).data)
