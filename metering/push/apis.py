"""Thin HTTP layer for meter mappings and usage pushes."""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from billing_site.api import ApiView, paginate, paginated_schema, validate_input
from billing_site.errors import InvalidRequest
from billing_site.tenancy import OPERATORS_ONLY
from customers.selectors import customer_from_input
from metering.models import Meter
from metering.push import mappings, selectors
from metering.push.serializers import (
    MeterMappingCreateInput,
    MeterMappingOutput,
    MeterMappingUpdateInput,
    UsagePushOutput,
)

_LIST = [OpenApiParameter("limit", int), OpenApiParameter("cursor", str)]
# Mappings decide what the provider bills, like meters: reading is usage:read, changing catalog:write.
_MAPPING_SCOPES = {"GET": "usage:read", "POST": "catalog:write", "PATCH": "catalog:write", "DELETE": "catalog:write"}


# Mappings and pushes are the operator's integration with its billing provider, never a tenant's.
_OPERATORS = {method: OPERATORS_ONLY for method in ("GET", "POST", "PATCH", "PUT", "DELETE")}


class MeterMappingListCreateApi(ApiView):
    required_scopes = _MAPPING_SCOPES
    tenant_access = _OPERATORS

    @extend_schema(
        operation_id="meter_mappings_list",
        parameters=[*_LIST, OpenApiParameter("meter", str), OpenApiParameter("customer", str)],
        responses=paginated_schema(MeterMappingOutput),
    )
    def get(self, request: Request) -> Response:
        return paginate(request, selectors.meter_mapping_list(filters=request.query_params), MeterMappingOutput)

    @extend_schema(
        operation_id="meter_mappings_create", request=MeterMappingCreateInput, responses={201: MeterMappingOutput}
    )
    def post(self, request: Request) -> Response:
        data = validate_input(MeterMappingCreateInput, request.data)
        meter = Meter.objects.filter(pk=data["meter"]).first()
        if meter is None:
            raise InvalidRequest(f"No such meter: {data['meter']}", param="meter", code="resource_missing")
        customer = customer_from_input(customer_id=data["customer"]) if data.get("customer") else None
        mapping = mappings.meter_mapping_create(
            meter=meter,
            customer=customer,
            event_name=data["event_name"],
            provider=data.get("provider", "stripe"),
            now=timezone.now(),
        )
        return Response(MeterMappingOutput(mapping).data, status=status.HTTP_201_CREATED)


class MeterMappingDetailApi(ApiView):
    required_scopes = _MAPPING_SCOPES
    tenant_access = _OPERATORS

    @extend_schema(operation_id="meter_mappings_retrieve", responses=MeterMappingOutput)
    def get(self, request: Request, mapping_id: str) -> Response:
        return Response(MeterMappingOutput(selectors.meter_mapping_get(mapping_id=mapping_id)).data)

    @extend_schema(operation_id="meter_mappings_update", request=MeterMappingUpdateInput, responses=MeterMappingOutput)
    def patch(self, request: Request, mapping_id: str) -> Response:
        mapping = selectors.meter_mapping_get(mapping_id=mapping_id)
        changes = validate_input(MeterMappingUpdateInput, request.data, partial=True)
        mapping = mappings.meter_mapping_update(mapping=mapping, changes=changes, now=timezone.now())
        return Response(MeterMappingOutput(mapping).data)

    @extend_schema(operation_id="meter_mappings_delete", responses={204: None})
    def delete(self, request: Request, mapping_id: str) -> Response:
        mapping = selectors.meter_mapping_get(mapping_id=mapping_id)
        mappings.meter_mapping_delete(mapping=mapping, now=timezone.now())
        return Response(status=status.HTTP_204_NO_CONTENT)


class UsagePushListApi(ApiView):
    required_scopes = {"GET": "usage:read"}
    tenant_access = _OPERATORS

    @extend_schema(
        operation_id="usage_pushes_list",
        parameters=[
            *_LIST,
            OpenApiParameter("customer", str),
            OpenApiParameter("meter", str),
            OpenApiParameter("status", str, enum=["pending", "sent", "failed", "unknown", "unreconcilable"]),
            OpenApiParameter("kind", str, enum=["push", "correction", "cancel"]),
            OpenApiParameter("slice_start_gte", str),
            OpenApiParameter("slice_start_lt", str),
        ],
        responses=paginated_schema(UsagePushOutput),
    )
    def get(self, request: Request) -> Response:
        return paginate(request, selectors.usage_push_list(filters=request.query_params), UsagePushOutput)


class UsagePushDetailApi(ApiView):
    required_scopes = {"GET": "usage:read"}
    tenant_access = _OPERATORS

    @extend_schema(operation_id="usage_pushes_retrieve", responses=UsagePushOutput)
    def get(self, request: Request, push_id: str) -> Response:
        return Response(UsagePushOutput(selectors.usage_push_get(push_id=push_id)).data)
