"""Thin HTTP layer for the catalog: parse, call a service or selector, render. No business rules here."""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from billing_site.api import ApiView, paginate, paginated_schema, validate_input
from billing_site.errors import NotFound
from billing_site.tenancy import OPERATORS_ONLY
from catalog import features, selectors, services
from catalog.pricing import quote_to_dict
from catalog.serializers import (
    CouponCreateInput,
    CouponOutput,
    CouponUpdateInput,
    FeatureAttachmentInput,
    FeatureAttachmentOutput,
    FeatureCreateInput,
    FeatureOutput,
    FeatureUpdateInput,
    PriceCreateInput,
    PriceOutput,
    PriceUpdateInput,
    ProductCreateInput,
    ProductOutput,
    ProductUpdateInput,
    QuoteInput,
    QuoteOutput,
)

_LIST_PARAMS = [
    OpenApiParameter("limit", int, description="1-100, default 20"),
    OpenApiParameter("cursor", str, description="next_cursor of the previous page"),
]
_ACTIVE = OpenApiParameter("active", str, enum=["true", "false"])


# The catalog is the operator's price list: a tenant-bound token neither reads nor changes it (what a tenant
# pays shows on its own subscriptions and invoices).
_OPERATORS = {method: OPERATORS_ONLY for method in ("GET", "POST", "PATCH")}


class ProductListCreateApi(ApiView):
    scope_resource = "catalog"
    tenant_access = _OPERATORS

    @extend_schema(
        operation_id="products_list", parameters=[*_LIST_PARAMS, _ACTIVE], responses=paginated_schema(ProductOutput)
    )
    def get(self, request: Request) -> Response:
        return paginate(request, selectors.product_list(filters=request.query_params), ProductOutput)

    @extend_schema(operation_id="products_create", request=ProductCreateInput, responses={201: ProductOutput})
    def post(self, request: Request) -> Response:
        data = validate_input(ProductCreateInput, request.data)
        product = services.product_create(**data, now=timezone.now())
        return Response(ProductOutput(product).data, status=status.HTTP_201_CREATED)


class ProductDetailApi(ApiView):
    scope_resource = "catalog"
    tenant_access = _OPERATORS

    @extend_schema(operation_id="products_retrieve", responses=ProductOutput)
    def get(self, request: Request, product_id: str) -> Response:
        return Response(ProductOutput(selectors.product_get(product_id=product_id)).data)

    @extend_schema(operation_id="products_update", request=ProductUpdateInput, responses=ProductOutput)
    def patch(self, request: Request, product_id: str) -> Response:
        product = selectors.product_get(product_id=product_id)
        changes = validate_input(ProductUpdateInput, request.data, partial=True)
        product = services.product_update(product=product, changes=changes, now=timezone.now())
        return Response(ProductOutput(product).data)


class PriceListCreateApi(ApiView):
    scope_resource = "catalog"
    tenant_access = _OPERATORS

    @extend_schema(
        operation_id="prices_list",
        parameters=[
            *_LIST_PARAMS,
            _ACTIVE,
            OpenApiParameter("product", str),
            OpenApiParameter("currency", str),
            OpenApiParameter("lookup_key", str),
            OpenApiParameter("type", str, enum=["standalone", "product"]),
        ],
        responses=paginated_schema(PriceOutput),
    )
    def get(self, request: Request) -> Response:
        return paginate(request, selectors.price_list(filters=request.query_params), PriceOutput)

    @extend_schema(
        operation_id="prices_create",
        request=PriceCreateInput,
        responses={201: PriceOutput},
        examples=[
            OpenApiExample(
                "Monthly plan price",
                summary="$20.00 a month for a product",
                value={
                    "type": "product",
                    "product": "prod_01j9zq3y5k8m2n4p6r8t0v2x4z",
                    "duration": {"amount": 1, "unit": "month"},
                    "amount": {"model": "fixed", "currency": "usd", "unit": "2000"},
                    "lookup_key": "pro_monthly",
                },
                request_only=True,
            ),
            OpenApiExample(
                "Metered volume price",
                summary="Per API call, volume tiers, billed monthly",
                value={
                    "type": "standalone",
                    "meter": "mtr_01j9zq3y5k8m2n4p6r8t0v2x4z",
                    "duration": {"amount": 1, "unit": "month"},
                    "amount": {
                        "model": "tiered",
                        "mode": "volume",
                        "currency": "usd",
                        "tiers": [{"up_to": "1000", "unit": "0.5"}, {"up_to": None, "unit": "0.25"}],
                    },
                },
                request_only=True,
            ),
            OpenApiExample(
                "Monthly plan price",
                value={
                    "id": "price_01j9zq4a7c9e1g3j5l7n9q1s3u",
                    "object": "price",
                    "type": "product",
                    "product": "prod_01j9zq3y5k8m2n4p6r8t0v2x4z",
                    "duration": {"amount": 1, "unit": "month"},
                    "amount": {"model": "fixed", "currency": "usd", "unit": "2000", "flat": 0},
                    "name": "$20.00 / month",
                    "description": None,
                    "meter": None,
                    "lookup_key": "pro_monthly",
                    "active": True,
                    "metadata": {},
                    "created_at": "2026-01-05T09:30:00Z",
                    "updated_at": "2026-01-05T09:30:00Z",
                },
                response_only=True,
                status_codes=["201"],
            ),
        ],
    )
    def post(self, request: Request) -> Response:
        data = validate_input(PriceCreateInput, request.data)
        duration = data.pop("duration")
        price = services.price_create(
            **data, duration_amount=duration["amount"], duration_unit=duration["unit"], now=timezone.now()
        )
        return Response(PriceOutput(price).data, status=status.HTTP_201_CREATED)


class PriceDetailApi(ApiView):
    scope_resource = "catalog"
    tenant_access = _OPERATORS

    @extend_schema(operation_id="prices_retrieve", responses=PriceOutput)
    def get(self, request: Request, price_id: str) -> Response:
        return Response(PriceOutput(selectors.price_get(price_id=price_id)).data)

    @extend_schema(operation_id="prices_update", request=PriceUpdateInput, responses=PriceOutput)
    def patch(self, request: Request, price_id: str) -> Response:
        price = selectors.price_get(price_id=price_id)
        changes = validate_input(PriceUpdateInput, request.data, partial=True)
        price = services.price_update(price=price, changes=changes, now=timezone.now())
        return Response(PriceOutput(price).data)


class PriceQuoteApi(ApiView):
    scope_resource = "catalog"
    tenant_access = _OPERATORS
    required_scopes = {"POST": "catalog:read"}  # a POST only because it takes a body: it changes nothing

    @extend_schema(operation_id="prices_quote", request=QuoteInput, responses=QuoteOutput)
    def post(self, request: Request, price_id: str) -> Response:
        price = selectors.price_get(price_id=price_id)
        data = validate_input(QuoteInput, request.data)
        result = selectors.price_quote(price=price, quantity=data.get("quantity"), events=data.get("events"))
        return Response(quote_to_dict(result))


class CouponListCreateApi(ApiView):
    scope_resource = "catalog"
    tenant_access = _OPERATORS

    @extend_schema(
        operation_id="coupons_list", parameters=[*_LIST_PARAMS, _ACTIVE], responses=paginated_schema(CouponOutput)
    )
    def get(self, request: Request) -> Response:
        return paginate(request, selectors.coupon_list(filters=request.query_params), CouponOutput)

    @extend_schema(operation_id="coupons_create", request=CouponCreateInput, responses={201: CouponOutput})
    def post(self, request: Request) -> Response:
        data = validate_input(CouponCreateInput, request.data)
        coupon = services.coupon_create(**data, now=timezone.now())
        return Response(CouponOutput(coupon).data, status=status.HTTP_201_CREATED)


class CouponDetailApi(ApiView):
    scope_resource = "catalog"
    tenant_access = _OPERATORS

    @extend_schema(operation_id="coupons_retrieve", responses=CouponOutput)
    def get(self, request: Request, coupon_id: str) -> Response:
        return Response(CouponOutput(selectors.coupon_get(coupon_id=coupon_id)).data)

    @extend_schema(operation_id="coupons_update", request=CouponUpdateInput, responses=CouponOutput)
    def patch(self, request: Request, coupon_id: str) -> Response:
        coupon = selectors.coupon_get(coupon_id=coupon_id)
        changes = validate_input(CouponUpdateInput, request.data, partial=True)
        coupon = services.coupon_update(coupon=coupon, changes=changes, now=timezone.now())
        return Response(CouponOutput(coupon).data)


# --- Features (entitlements) ------------------------------------------------------------------------


class FeatureListCreateApi(ApiView):
    scope_resource = "catalog"
    # The operator's catalog, as products and prices are.
    tenant_access = {"GET": OPERATORS_ONLY, "POST": OPERATORS_ONLY}

    @extend_schema(
        operation_id="features_list",
        parameters=[
            *_LIST_PARAMS,
            _ACTIVE,
            OpenApiParameter("lookup_key", str),
            OpenApiParameter("type", str, enum=["boolean", "static", "metered"]),
        ],
        responses=paginated_schema(FeatureOutput),
    )
    def get(self, request: Request) -> Response:
        return paginate(request, features.feature_list(filters=request.query_params), FeatureOutput)

    @extend_schema(operation_id="features_create", request=FeatureCreateInput, responses={201: FeatureOutput})
    def post(self, request: Request) -> Response:
        data = validate_input(FeatureCreateInput, request.data)
        feature = features.feature_create(**data, now=timezone.now())
        return Response(FeatureOutput(feature).data, status=status.HTTP_201_CREATED)


class FeatureDetailApi(ApiView):
    scope_resource = "catalog"
    tenant_access = {"GET": OPERATORS_ONLY, "PATCH": OPERATORS_ONLY}

    @extend_schema(operation_id="features_retrieve", responses=FeatureOutput)
    def get(self, request: Request, feature_id: str) -> Response:
        return Response(FeatureOutput(features.feature_get(feature_id=feature_id)).data)

    @extend_schema(operation_id="features_update", request=FeatureUpdateInput, responses=FeatureOutput)
    def patch(self, request: Request, feature_id: str) -> Response:
        feature = features.feature_get(feature_id=feature_id)
        changes = validate_input(FeatureUpdateInput, request.data, partial=True)
        return Response(
            FeatureOutput(features.feature_update(feature=feature, changes=changes, now=timezone.now())).data
        )


class FeatureAttachmentListCreateApi(ApiView):
    scope_resource = "catalog"
    tenant_access = {"GET": OPERATORS_ONLY, "POST": OPERATORS_ONLY}

    @extend_schema(
        operation_id="feature_attachments_list",
        parameters=[
            *_LIST_PARAMS,
            OpenApiParameter("feature", str),
            OpenApiParameter("product", str),
            OpenApiParameter("price", str),
        ],
        responses=paginated_schema(FeatureAttachmentOutput),
    )
    def get(self, request: Request) -> Response:
        return paginate(request, features.attachment_list(filters=request.query_params), FeatureAttachmentOutput)

    @extend_schema(
        operation_id="feature_attachments_create",
        request=FeatureAttachmentInput,
        responses={201: FeatureAttachmentOutput},
    )
    def post(self, request: Request) -> Response:
        data = validate_input(FeatureAttachmentInput, request.data)
        attachment = features.feature_attach(**data, now=timezone.now())
        return Response(FeatureAttachmentOutput(attachment).data, status=status.HTTP_201_CREATED)


class FeatureAttachmentDetailApi(ApiView):
    scope_resource = "catalog"
    tenant_access = {"GET": OPERATORS_ONLY, "DELETE": OPERATORS_ONLY}

    @extend_schema(operation_id="feature_attachments_retrieve", responses=FeatureAttachmentOutput)
    def get(self, request: Request, attachment_id: str) -> Response:
        attachment = features.attachment_list().filter(pk=attachment_id).first()
        if attachment is None:
            raise NotFound(f"No such feature attachment: {attachment_id}", param="id")
        return Response(FeatureAttachmentOutput(attachment).data)

    @extend_schema(operation_id="feature_attachments_delete", responses={204: None})
    def delete(self, request: Request, attachment_id: str) -> Response:
        features.feature_detach(attachment_id=attachment_id, now=timezone.now())
        return Response(status=status.HTTP_204_NO_CONTENT)
