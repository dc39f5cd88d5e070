"""Thin HTTP layer for meters, events and usage."""

from __future__ import annotations

from typing import Any

import orjson
from django.http import HttpResponse, StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from billing_site.api import ApiView, paginate, paginated_schema, validate_input
from billing_site.csv_export import CsvExportMixin, csv_response
from billing_site.errors import InvalidRequest
from billing_site.renderers import dumps
from billing_site.replicas import replica_reads
from billing_site.tenancy import OPERATORS_ONLY, TENANT_SCOPED, TenantScope
from customers import selectors as customer_selectors
from customers.models import Customer
from metering import alerts, exports, ingest, selectors, services, usage
from metering.models import Meter
from metering.serializers import (
    AlertCreateInput,
    AlertOutput,
    AlertUpdateInput,
    BillingEventInput,
    EventBatchInput,
    IngestOutput,
    MeterCreateInput,
    MeterOutput,
    MeterUpdateInput,
    ThresholdCheckInput,
    ThresholdCheckOutput,
    UsageBucketOutput,
    UsageCancelInput,
    UsageCancelOutput,
    UsageExportInput,
    UsageOutput,
    UsageQueryInput,
    encode_usage_cursor,
    usage_filters_from_query,
)
from webhooks.apis import EventListApi

# Meters are configuration that pricing depends on: reading them is usage:read, changing them catalog:write.
_METER_SCOPES = {
    "GET": "usage:read",
    "POST": "catalog:write",
    "PUT": "catalog:write",
    "PATCH": "catalog:write",
    "DELETE": "catalog:write",
}


# Meters are the operator's catalog, like prices: not a tenant's to read or change.
_OPERATORS = {method: OPERATORS_ONLY for method in ("GET", "POST", "PUT", "PATCH", "DELETE")}


class MeterListCreateApi(ApiView):
    required_scopes = _METER_SCOPES
    tenant_access = _OPERATORS

    @extend_schema(
        operation_id="meters_list",
        parameters=[
            OpenApiParameter("limit", int),
            OpenApiParameter("cursor", str),
            OpenApiParameter("code", str),
            OpenApiParameter("aggregation", str),
            OpenApiParameter("active", bool),
        ],
        responses=paginated_schema(MeterOutput),
    )
    def get(self, request: Request) -> Response:
        return paginate(request, selectors.meter_list(filters=request.query_params), MeterOutput)

    @extend_schema(operation_id="meters_create", request=MeterCreateInput, responses={201: MeterOutput})
    def post(self, request: Request) -> Response:
        data = validate_input(MeterCreateInput, request.data)
        meter = services.meter_create(**data, now=timezone.now())
        return Response(MeterOutput(meter).data, status=status.HTTP_201_CREATED)


class MeterDetailApi(ApiView):
    required_scopes = _METER_SCOPES
    tenant_access = _OPERATORS

    @extend_schema(operation_id="meters_retrieve", responses=MeterOutput)
    def get(self, request: Request, meter_id: str) -> Response:
        return Response(MeterOutput(selectors.meter_get(meter_id=meter_id)).data)

    @extend_schema(operation_id="meters_replace", request=MeterUpdateInput, responses=MeterOutput)
    def put(self, request: Request, meter_id: str) -> Response:
        meter = selectors.meter_get(meter_id=meter_id)
        data = validate_input(MeterUpdateInput, request.data)
        # A full replacement: what the body leaves out goes back to its default.
        changes: dict[str, Any] = {"unique_key": "", "filters": {}, "description": "", "active": True, **data}
        new_metadata = data.get("metadata", {})
        changes["metadata"] = {**{key: None for key in meter.metadata}, **new_metadata}
        meter = services.meter_update(meter=meter, changes=changes, now=timezone.now())
        return Response(MeterOutput(meter).data)

    @extend_schema(operation_id="meters_update", request=MeterUpdateInput, responses=MeterOutput)
    def patch(self, request: Request, meter_id: str) -> Response:
        meter = selectors.meter_get(meter_id=meter_id)
        changes = validate_input(MeterUpdateInput, request.data, partial=True)
        meter = services.meter_update(meter=meter, changes=changes, now=timezone.now())
        return Response(MeterOutput(meter).data)

    @extend_schema(operation_id="meters_delete", responses={204: None})
    def delete(self, request: Request, meter_id: str) -> Response:
        meter = selectors.meter_get(meter_id=meter_id)
        services.meter_delete(meter=meter, now=timezone.now())
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- Ingestion ------------------------------------------------------------------------------------


def _events_from_body(request: Request, *, compat: bool) -> list[Any]:
    """Parse the raw body with orjson (the fast path never builds DRF's request.data)."""
    content_type = request.content_type.split(";")[0].strip().lower()
    if content_type and content_type != "application/json":
        raise InvalidRequest("Send the events as application/json.", code="unsupported_media_type")
    raw = request.body
    if b"\\u0000" in raw:  # PostgreSQL text cannot hold NUL
        raise InvalidRequest("NUL characters (\\u0000) are not allowed.", code="malformed_body")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"The request body is not valid JSON ({exc}).", code="malformed_body") from None
    if compat:
        events = body if isinstance(body, list) else [body]
        events = [ingest.billing_event_to_event(event) for event in events]
        param = None
    elif isinstance(body, dict) and "events" in body:
        if len(body) > 1:
            extra = sorted(k for k in body if k != "events")[0]
            raise InvalidRequest(f"Unknown field '{extra}' next to events.", param=extra, code="unknown_field")
        events = body["events"]
        param = "events"
        if not isinstance(events, list):
            raise InvalidRequest("events must be a list of events.", param="events", code="parameter_invalid")
    elif isinstance(body, dict):
        events = [body]
        param = None
    else:
        raise InvalidRequest('Send one event object or {"events": [...]}.', code="malformed_body")
    if not events:
        raise InvalidRequest("The batch is empty.", param=param or "events", code="parameter_missing")
    if len(events) > ingest.MAX_BATCH:
        raise InvalidRequest(
            f"A batch holds at most {ingest.MAX_BATCH} events; this one has {len(events)}.",
            param=param or "events",
            code="batch_too_large",
        )
    return events


def _events_for_tenant(events: list[Any], tenant: TenantScope, *, compat: bool) -> None:
    """A tenant-bound caller's events are its own customer's: one that names no customer is given the
    tenant's; one naming any other customer refuses the whole batch (400 naming it, as for an unknown
    customer: another tenant's existence is not revealed), so nothing of it is stored."""
    for index, event in enumerate(events):
        if not isinstance(event, dict):
            continue  # rejected per event by the ingestion, as for anyone
        named = {key: event.get(key) for key in ("customer", "external_id") if event.get(key) is not None}
        allowed = {"customer": tenant.customer_id, "external_id": tenant.external_id}
        wrong = [key for key, value in named.items() if tenant.customer_id is None or value != allowed[key]]
        if wrong:
            field = "TenantID" if compat else wrong[0]
            param = f"events[{index}].{field}" if len(events) > 1 or compat else field
            raise InvalidRequest(f"No such customer: {named[wrong[0]]}", param=param, code="resource_missing")
        if not named:
            event.pop("external_id", None)
            event["customer"] = tenant.customer_id


class EventIngestApi(EventListApi):
    """`POST /events` ingests usage; `GET /events` on the same path lists the billing-event outbox (the
    webhooks app's view, inherited)."""

    required_scopes = {"POST": "usage:write", **EventListApi.required_scopes}
    # A tenant sends its own usage (each event names its own customer, or none: then it is its own).
    tenant_access = {"POST": TENANT_SCOPED, **EventListApi.tenant_access}
    compat = False

    @extend_schema(
        operation_id="events_ingest",
        request=EventBatchInput,
        responses=IngestOutput,
        examples=[
            OpenApiExample(
                "Two API calls",
                value={
                    "events": [
                        {
                            "external_id": "tenant-4711",
                            "meter": "api-calls",
                            "value": "1",
                            "timestamp": "2026-01-05T09:30:00Z",
                            "idempotency_key": "req-8f14e45f",
                        },
                        {
                            "external_id": "tenant-4711",
                            "meter": "api-calls",
                            "value": "1",
                            "timestamp": "2026-01-05T09:30:02Z",
                            "idempotency_key": "req-c9f0f895",
                            "dimensions": {"region": "eu"},
                        },
                    ]
                },
                request_only=True,
            ),
        ],
    )
    def post(self, request: Request) -> HttpResponse:
        events = _events_from_body(request, compat=self.compat)
        if self.tenant_scope is not None:
            _events_for_tenant(events, self.tenant_scope, compat=self.compat)
        result = ingest.usage_ingest(events=events, now=timezone.now())
        return HttpResponse(dumps(result.as_dict()), content_type="application/json")


class BillingEventIngestApi(EventIngestApi):
    http_method_names = ["post", "options"]  # no outbox listing at events/billing-events
    compat = True

    @extend_schema(operation_id="billing_events_ingest", request=BillingEventInput(many=True), responses=IngestOutput)
    def post(self, request: Request) -> HttpResponse:
        return super().post(request)


# --- Usage ----------------------------------------------------------------------------------------


def _usage_customer(data: dict[str, Any], tenant: TenantScope | None = None) -> Customer:
    """The customer named by `customer` (id) or `external_id`; deleted customers keep their usage."""
    if "customer" in data:
        return customer_selectors.customer_from_input(customer_id=data["customer"], include_deleted=True, tenant=tenant)
    customer = customer_selectors.customer_get_by_external_id(
        external_id=data["external_id"], include_deleted=True, tenant=tenant
    )
    if customer is None:
        raise InvalidRequest(
            f"No customer with external_id {data['external_id']!r}.", param="external_id", code="resource_missing"
        )
    return customer


class UsageApi(ApiView):
    """A meter's usage for one customer, per window and optionally per dimension value.

    Buckets without events are left out, except that window=none without group_by always returns its one
    bucket. Pages go by bucket start, then group value (null first)."""

    required_scopes = {"GET": "usage:read"}
    # A tenant reads its own usage: `customer` / `external_id` default to its own; another's is a 400.
    tenant_access = {"GET": TENANT_SCOPED}

    @extend_schema(
        operation_id="usage_retrieve",
        parameters=[
            OpenApiParameter("customer", str, description="cus_… (or external_id)"),
            OpenApiParameter("external_id", str),
            OpenApiParameter("start", str, required=True, description="RFC 3339 or epoch ms; included"),
            OpenApiParameter("end", str, required=True, description="RFC 3339 or epoch ms; excluded"),
            OpenApiParameter("window", str, enum=["hour", "day", "none"], description="default none"),
            OpenApiParameter("group_by", str, description="one dimension name"),
            OpenApiParameter(
                "filters[<dimension>]",
                str,
                many=True,
                description="only events whose dimension has this value (repeat for several values); "
                "several dimensions must all match, on top of the meter's own filters",
            ),
            OpenApiParameter("limit", int, description="1-100, default 20"),
            OpenApiParameter("cursor", str, description="next_cursor of the previous page"),
        ],
        responses=UsageOutput,
    )
    def get(self, request: Request, meter_id: str) -> Response:
        meter = selectors.meter_get(meter_id=meter_id)
        filters, params = usage_filters_from_query(request.query_params)
        if self.tenant_scope is not None and not ({"customer", "external_id"} & params.keys()):
            params["customer"] = self.tenant_scope.customer_id or ""
        query = validate_input(UsageQueryInput, params)
        limit = query["limit"]
        with replica_reads():  # usage may lag the primary by the replication delay; billing never reads here
            customer = _usage_customer(query, tenant=self.tenant_scope)
            buckets = self._series(meter, customer, query, filters)
        page, has_more = buckets[:limit], len(buckets) > limit
        return Response(
            {
                "meter": meter.id,
                "customer": customer.id,
                "aggregation": meter.aggregation,
                "data": UsageBucketOutput(page, many=True).data,
                "has_more": has_more,
                "next_cursor": encode_usage_cursor(page[-1].start, page[-1].group) if has_more else None,
            }
        )

    @staticmethod
    def _series(meter: Any, customer: Customer, query: dict[str, Any], filters: dict[str, list[str]]) -> list[Any]:
        return selectors.usage_series(
            meter=meter,
            customer=customer,
            start=query["start"],
            end=query["end"],
            window=query["window"],
            group_by=query.get("group_by"),
            filters=filters,
            after=query.get("cursor"),
        )


class UsageCancelApi(ApiView):
    """Cancel usage events: they stay stored, marked canceled, and no aggregation counts them again."""

    required_scopes = {"DELETE": "usage:write"}
    # Canceling usage corrects what will be billed: the operator's.
    tenant_access = {"DELETE": OPERATORS_ONLY}

    @extend_schema(operation_id="usage_cancel", request=UsageCancelInput, responses=UsageCancelOutput)
    def delete(self, request: Request) -> Response:
        data = validate_input(UsageCancelInput, request.data)
        customer = _usage_customer(data) if "idempotency_keys" in data else None
        result = usage.usage_cancel(
            event_ids=data.get("event_ids"),
            customer=customer,
            idempotency_keys=data.get("idempotency_keys"),
            reason=data["reason"],
            now=timezone.now(),
        )
        return Response(result.as_dict())


# --- Usage alerts ---------------------------------------------------------------------------------

# Alerts are the operator's notification settings about its tenants (like the webhook endpoints they
# feed), so tenant principals are refused; so is check-threshold until usage reads are tenant-scoped.
_ALERT_ACCESS = {method: OPERATORS_ONLY for method in ("GET", "POST", "PATCH", "DELETE")}
_ALERT_SCOPES = {"GET": "usage:read", "POST": "usage:write", "PATCH": "usage:write", "DELETE": "usage:write"}


class AlertListCreateApi(ApiView):
    required_scopes = _ALERT_SCOPES
    tenant_access = _ALERT_ACCESS

    @extend_schema(
        operation_id="alerts_list",
        parameters=[
            OpenApiParameter("limit", int),
            OpenApiParameter("cursor", str),
            OpenApiParameter("customer", str),
            OpenApiParameter("meter", str),
            OpenApiParameter("kind", str, enum=["usage", "invoice_amount"]),
            OpenApiParameter("active", bool),
        ],
        responses=paginated_schema(AlertOutput),
    )
    def get(self, request: Request) -> Response:
        return paginate(request, selectors.alert_list(filters=request.query_params), AlertOutput)

    @extend_schema(operation_id="alerts_create", request=AlertCreateInput, responses={201: AlertOutput})
    def post(self, request: Request) -> Response:
        data = validate_input(AlertCreateInput, request.data)
        customer = customer_selectors.customer_from_input(customer_id=data.pop("customer"))
        meter_id = data.pop("meter", None)
        meter = None
        if meter_id:
            meter = Meter.objects.filter(pk=meter_id).first()
            if meter is None:
                raise InvalidRequest(f"No such meter: {meter_id}", param="meter", code="resource_missing")
        alert = alerts.usage_alert_create(customer=customer, meter=meter, **data, now=timezone.now())
        return Response(AlertOutput(selectors.alert_get(alert_id=alert.id)).data, status=status.HTTP_201_CREATED)


class AlertDetailApi(ApiView):
    required_scopes = _ALERT_SCOPES
    tenant_access = _ALERT_ACCESS

    @extend_schema(operation_id="alerts_retrieve", responses=AlertOutput)
    def get(self, request: Request, alert_id: str) -> Response:
        return Response(AlertOutput(selectors.alert_get(alert_id=alert_id)).data)

    @extend_schema(operation_id="alerts_update", request=AlertUpdateInput, responses=AlertOutput)
    def patch(self, request: Request, alert_id: str) -> Response:
        alert = selectors.alert_get(alert_id=alert_id)
        changes = validate_input(AlertUpdateInput, request.data, partial=True)
        alerts.usage_alert_update(alert=alert, now=timezone.now(), **changes)
        return Response(AlertOutput(selectors.alert_get(alert_id=alert_id)).data)

    @extend_schema(operation_id="alerts_delete", responses={204: None})
    def delete(self, request: Request, alert_id: str) -> Response:
        alerts.usage_alert_delete(alert=selectors.alert_get(alert_id=alert_id), now=timezone.now())
        return Response(status=status.HTTP_204_NO_CONTENT)


class ThresholdCheckApi(ApiView):
    """The Go engine's CheckThreshold: the customer's usage of the meter in its current billing period
    (the UTC calendar month without a subscription) and whether it has reached `threshold`."""

    required_scopes = {"GET": "usage:read"}
    tenant_access = {"GET": OPERATORS_ONLY}

    @extend_schema(
        operation_id="usage_check_threshold",
        parameters=[
            OpenApiParameter("customer", str, description="cus_… (or external_id)"),
            OpenApiParameter("external_id", str),
            OpenApiParameter("threshold", str, required=True, description="a decimal"),
        ],
        responses=ThresholdCheckOutput,
    )
    def get(self, request: Request, meter_id: str) -> Response:
        meter = selectors.meter_get(meter_id=meter_id)
        query = validate_input(ThresholdCheckInput, request.query_params.dict())
        result = alerts.threshold_check(
            meter=meter, customer=_usage_customer(query), threshold=query["threshold"], now=timezone.now()
        )
        return Response(ThresholdCheckOutput(result).data)


class UsageExportApi(CsvExportMixin, ApiView):
    """One meter's usage events over [start, end) as CSV, streamed (no row limit). Operators only."""

    required_scopes = {"GET": "usage:read"}
    tenant_access = {"GET": OPERATORS_ONLY}

    @extend_schema(
        operation_id="exports_usage",
        parameters=[
            OpenApiParameter("meter", str, required=True, description="mtr_… or the meter's code"),
            OpenApiParameter("start", str, required=True, description="RFC 3339 or epoch ms; included"),
            OpenApiParameter("end", str, required=True, description="RFC 3339 or epoch ms; excluded"),
            OpenApiParameter("customer", str, description="cus_…: only this customer's events"),
            OpenApiParameter("include_canceled", bool, description="default false"),
        ],
        responses={(200, "text/csv"): OpenApiResponse(description="CSV, streamed (header row first)")},
    )
    def get(self, request: Request) -> StreamingHttpResponse:
        query = validate_input(UsageExportInput, request.query_params.dict())
        meter = exports.export_meter(query["meter"])
        customer = None
        if "customer" in query:
            customer = customer_selectors.customer_from_input(customer_id=query["customer"], include_deleted=True).pk
        events = exports.events_for_export(
            meter=meter,
            start=query["start"],
            end=query["end"],
            customer=customer,
            include_canceled=query["include_canceled"],
        )
        return csv_response("usage.csv", exports.USAGE_COLUMNS, exports.usage_rows(events, meter))
