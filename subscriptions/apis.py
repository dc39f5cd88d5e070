"""Thin HTTP layer for subscriptions."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from billing_site.api import ApiView, paginate, paginated_schema, validate_input
from billing_site.errors import InvalidRequest, NotFound
from billing_site.tenancy import OPERATORS_ONLY, TENANT_SCOPED
from catalog.models import Coupon, Price
from catalog.selectors import price_get
from customers.clocks import customer_now, customer_now_by_id
from customers.selectors import customer_from_input
from invoicing.serializers import InvoiceOutput, draft_data
from subscriptions import selectors
from subscriptions.entitlements import customer_entitlements
from subscriptions.serializers import (
    CancelInput,
    ChangeInput,
    EntitlementsOutput,
    PriceMigrateInput,
    PriceMigrationOutput,
    SubscriptionCreateInput,
    SubscriptionOutput,
    TierCreateInput,
    TierOutput,
    TierUpdateInput,
)
from subscriptions.services import lifecycle, migration, preview, tiers
from subscriptions.services.lifecycle import ItemSpec

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
        specs.append(ItemSpec(price=price, quantity=item.get("quantity"), minimum_amount=item.get("minimum_amount")))
    return specs


class SubscriptionListCreateApi(ApiView):
    scope_resource = "billing"
    # A tenant reads its own subscriptions. Choosing prices and coupons is the operator's (a tenant must not
    # subscribe itself to a 100%-off coupon); so is changing them.
    tenant_access = {"GET": TENANT_SCOPED, "POST": OPERATORS_ONLY}

    @extend_schema(
        operation_id="subscriptions_list",
        parameters=[*_LIST, OpenApiParameter("customer", str), OpenApiParameter("status", str)],
        responses=paginated_schema(SubscriptionOutput),
    )
    def get(self, request: Request) -> Response:
        subs = selectors.subscription_list(filters=request.query_params, tenant=self.tenant_scope)
        return paginate(request, subs, SubscriptionOutput)

    @extend_schema(
        operation_id="subscriptions_create", request=SubscriptionCreateInput, responses={201: SubscriptionOutput}
    )
    def post(self, request: Request) -> Response:
        data = validate_input(SubscriptionCreateInput, request.data)
        customer = customer_from_input(customer_id=data["customer"])
        now = customer_now(customer, timezone.now())  # a test clock's customer lives on its clock
        coupon = None
        if data.get("coupon"):
            coupon = Coupon.objects.filter(pk=data["coupon"]).first()
            if coupon is None:
                raise InvalidRequest(f"No such coupon: {data['coupon']}", param="coupon", code="resource_missing")
        start = data.get("start_date")
        trial_end = data.get("trial_end")
        if "trial_days" in data:
            trial_end = (start or now) + timedelta(days=data["trial_days"])
        sub, invoice = lifecycle.subscription_create(
            customer=customer,
            items=_item_specs(data["items"]),
            now=now,
            start_date=start,
            trial_end=trial_end,
            billing_cycle_anchor=data.get("billing_cycle_anchor"),
            collection_method=data.get("collection_method", "charge_automatically"),
            days_until_due=data.get("days_until_due"),
            coupon=coupon,
            minimum_amount=data.get("minimum_amount"),
            progressive_billing_thresholds=data.get("progressive_billing_thresholds"),
            metadata={k: v for k, v in data.get("metadata", {}).items() if v},
        )
        body = SubscriptionOutput(sub).data
        body["latest_invoice"] = invoice.id if invoice else None
        return Response(body, status=status.HTTP_201_CREATED)


class SubscriptionDetailApi(ApiView):
    scope_resource = "billing"
    tenant_access = {"GET": TENANT_SCOPED}

    @extend_schema(operation_id="subscriptions_retrieve", responses=SubscriptionOutput)
    def get(self, request: Request, subscription_id: str) -> Response:
        sub = selectors.subscription_get(subscription_id=subscription_id, tenant=self.tenant_scope)
        return Response(SubscriptionOutput(sub).data)


class SubscriptionCancelApi(ApiView):
    scope_resource = "billing"
    tenant_access = {"POST": TENANT_SCOPED}  # a tenant may end its own subscription

    @extend_schema(operation_id="subscriptions_cancel", request=CancelInput, responses=SubscriptionOutput)
    def post(self, request: Request, subscription_id: str) -> Response:
        sub = selectors.subscription_get(subscription_id=subscription_id, tenant=self.tenant_scope)
        data = validate_input(CancelInput, request.data)
        sub, invoice = lifecycle.subscription_cancel(
            subscription=sub,
            at_period_end=data["at_period_end"],
            prorate=data["prorate"],
            now=customer_now_by_id(sub.customer_id, timezone.now()),
        )
        body = SubscriptionOutput(sub).data
        body["latest_invoice"] = invoice.id if invoice else None
        return Response(body)


class SubscriptionReactivateApi(ApiView):
    scope_resource = "billing"
    tenant_access = {"POST": TENANT_SCOPED}

    @extend_schema(operation_id="subscriptions_reactivate", request=None, responses=SubscriptionOutput)
    def post(self, request: Request, subscription_id: str) -> Response:
        sub = selectors.subscription_get(subscription_id=subscription_id, tenant=self.tenant_scope)
        sub = lifecycle.subscription_reactivate(
            subscription=sub, now=customer_now_by_id(sub.customer_id, timezone.now())
        )
        return Response(SubscriptionOutput(sub).data)


class SubscriptionChangeApi(ApiView):
    scope_resource = "billing"
    tenant_access = {"POST": OPERATORS_ONLY}

    @extend_schema(operation_id="subscriptions_change", request=ChangeInput, responses=SubscriptionOutput)
    def post(self, request: Request, subscription_id: str) -> Response:
        sub = selectors.subscription_get(subscription_id=subscription_id, tenant=self.tenant_scope)
        data = validate_input(ChangeInput, request.data)
        sub, invoice = lifecycle.subscription_change(
            subscription=sub,
            items=_item_specs(data["items"]),
            proration_behavior=data["proration_behavior"],
            now=customer_now_by_id(sub.customer_id, timezone.now()),
        )
        body = SubscriptionOutput(sub).data
        body["latest_invoice"] = invoice.id if invoice else None
        return Response(body)


class UpcomingInvoiceApi(ApiView):
    scope_resource = "billing"
    tenant_access = {"GET": TENANT_SCOPED}

    @extend_schema(operation_id="subscriptions_upcoming_invoice", responses=InvoiceOutput)
    def get(self, request: Request, subscription_id: str) -> Response:
        sub = selectors.subscription_get(subscription_id=subscription_id, tenant=self.tenant_scope)
        # `subscription_get` joined the customer: its clock costs a query only when it has one.
        draft = preview.subscription_upcoming_invoice(subscription=sub, now=customer_now(sub.customer, timezone.now()))
        return Response(InvoiceOutput(draft_data(draft)).data)


class PriceMigrateApi(ApiView):
    """Move every live subscription on a price to another price (an operator's action, never a tenant's)."""

    scope_resource = "billing"
    required_scopes = {"POST": "billing:write"}
    tenant_access = {"POST": OPERATORS_ONLY}

    @extend_schema(operation_id="prices_migrate", request=PriceMigrateInput, responses=PriceMigrationOutput)
    def post(self, request: Request, price_id: str) -> Response:
        from_price = price_get(price_id=price_id)
        data = validate_input(PriceMigrateInput, request.data)
        to_price = Price.objects.filter(pk=data["to_price"]).first()
        if to_price is None:
            raise InvalidRequest(f"No such price: {data['to_price']}", param="to_price", code="resource_missing")
        result = migration.price_migrate(
            from_price=from_price, to_price=to_price, when=data["when"], dry_run=data["dry_run"], now=timezone.now()
        )
        return Response(PriceMigrationOutput(result.as_dict()).data)


# --- Tiers ----------------------------------------------------------------------------------------


class TierListCreateApi(ApiView):
    """The control plane's tiers and the plan each subscribes a new tenant to (operator configuration)."""

    scope_resource = "billing"
    tenant_access = {"GET": OPERATORS_ONLY, "POST": OPERATORS_ONLY}

    @extend_schema(
        operation_id="tiers_list",
        parameters=[*_LIST, OpenApiParameter("name", str), OpenApiParameter("active", bool)],
        responses=paginated_schema(TierOutput),
    )
    def get(self, request: Request) -> Response:
        return paginate(request, selectors.tier_list(filters=request.query_params), TierOutput)

    @extend_schema(operation_id="tiers_create", request=TierCreateInput, responses={201: TierOutput})
    def post(self, request: Request) -> Response:
        data = validate_input(TierCreateInput, request.data)
        tier = tiers.tier_create(**data, now=timezone.now())
        return Response(TierOutput(selectors.tier_get(tier_id=tier.id)).data, status=status.HTTP_201_CREATED)


class TierDetailApi(ApiView):
    scope_resource = "billing"
    tenant_access = {"GET": OPERATORS_ONLY, "PATCH": OPERATORS_ONLY}

    @extend_schema(operation_id="tiers_retrieve", responses=TierOutput)
    def get(self, request: Request, tier_id: str) -> Response:
        return Response(TierOutput(selectors.tier_get(tier_id=tier_id)).data)

    @extend_schema(operation_id="tiers_update", request=TierUpdateInput, responses=TierOutput)
    def patch(self, request: Request, tier_id: str) -> Response:
        tier = selectors.tier_get(tier_id=tier_id)
        changes = validate_input(TierUpdateInput, request.data, partial=True)
        tier = tiers.tier_update(tier=tier, changes=changes, now=timezone.now())
        return Response(TierOutput(selectors.tier_get(tier_id=tier.id)).data)


# --- Entitlements ---------------------------------------------------------------------------------


class CustomerEntitlementsApi(ApiView):
    """What the customer may use now. Built to be called on every request of the operator's application:
    answered from the cache without a database query while nothing it depends on has changed."""

    required_scopes = {"GET": "customers:read"}
    tenant_access = {"GET": TENANT_SCOPED}

    @extend_schema(operation_id="customers_entitlements", responses=EntitlementsOutput)
    def get(self, request: Request, customer_id: str) -> Response:
        tenant = self.tenant_scope
        if tenant is not None and not tenant.allows(customer_id):
            raise NotFound(f"No such customer: {customer_id}", param="id")
        return Response(customer_entitlements(customer_id=customer_id, now=timezone.now()))
