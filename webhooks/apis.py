"""Thin HTTP layer for webhook endpoints, deliveries and the events API (all need `webhooks:manage`),
and the inbound provider webhook view (signed by the provider, no API key)."""

from __future__ import annotations

import logging

from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from billing_site.api import ApiView, paginate, paginated_schema, validate_input
from billing_site.errors import error_response
from billing_site.tenancy import OPERATORS_ONLY, TENANT_SCOPED
from webhooks import delivery, endpoints, inbound, selectors
from webhooks.serializers import (
    DeliveryDetailOutput,
    DeliveryOutput,
    EndpointCreateInput,
    EndpointOutput,
    EndpointUpdateInput,
    EndpointWithSecretOutput,
    EventOutput,
    ResendInput,
    ResendOutput,
)

logger = logging.getLogger("billing.webhooks.inbound")

_SCOPE = "webhooks:manage"
_ALL = {method: _SCOPE for method in ("GET", "POST", "PATCH", "DELETE")}
# Endpoints and deliveries are the operator's integration: never a tenant's to see or change.
_OPERATORS = {method: OPERATORS_ONLY for method in ("GET", "POST", "PATCH", "DELETE")}
_LIST_PARAMS = [
    OpenApiParameter("limit", int, description="1-100, default 20"),
    OpenApiParameter("cursor", str, description="next_cursor of the previous page"),
]


def _with_secret(endpoint: object) -> dict:
    return EndpointWithSecretOutput(endpoint).data


class EndpointListCreateApi(ApiView):
    required_scopes = _ALL
    tenant_access = _OPERATORS

    @extend_schema(
        operation_id="webhook_endpoints_list",
        parameters=[*_LIST_PARAMS, OpenApiParameter("status", str, enum=["enabled", "disabled"])],
        responses=paginated_schema(EndpointOutput),
    )
    def get(self, request: Request) -> Response:
        return paginate(request, selectors.endpoint_list(filters=request.query_params), EndpointOutput)

    @extend_schema(
        operation_id="webhook_endpoints_create", request=EndpointCreateInput, responses={201: EndpointWithSecretOutput}
    )
    def post(self, request: Request) -> Response:
        data = validate_input(EndpointCreateInput, request.data)
        endpoint = endpoints.endpoint_create(**data, now=timezone.now())
        return Response(_with_secret(endpoint), status=status.HTTP_201_CREATED)


class EndpointDetailApi(ApiView):
    required_scopes = _ALL
    tenant_access = _OPERATORS

    @extend_schema(operation_id="webhook_endpoints_retrieve", responses=EndpointOutput)
    def get(self, request: Request, endpoint_id: str) -> Response:
        return Response(EndpointOutput(selectors.endpoint_get(endpoint_id=endpoint_id)).data)

    @extend_schema(operation_id="webhook_endpoints_update", request=EndpointUpdateInput, responses=EndpointOutput)
    def patch(self, request: Request, endpoint_id: str) -> Response:
        endpoint = selectors.endpoint_get(endpoint_id=endpoint_id)
        changes = validate_input(EndpointUpdateInput, request.data, partial=True)
        endpoint = endpoints.endpoint_update(endpoint=endpoint, changes=changes, now=timezone.now())
        return Response(EndpointOutput(endpoint).data)

    @extend_schema(operation_id="webhook_endpoints_delete", responses={204: None})
    def delete(self, request: Request, endpoint_id: str) -> Response:
        endpoint = selectors.endpoint_get(endpoint_id=endpoint_id)
        endpoints.endpoint_delete(endpoint=endpoint, now=timezone.now())
        return Response(status=status.HTTP_204_NO_CONTENT)


class EndpointRotateSecretApi(ApiView):
    required_scopes = _ALL
    tenant_access = _OPERATORS

    @extend_schema(operation_id="webhook_endpoints_rotate_secret", request=None, responses=EndpointWithSecretOutput)
    def post(self, request: Request, endpoint_id: str) -> Response:
        endpoint = selectors.endpoint_get(endpoint_id=endpoint_id)
        endpoint = endpoints.endpoint_secret_rotate(endpoint=endpoint, now=timezone.now())
        return Response(_with_secret(endpoint))


class EndpointTestApi(ApiView):
    required_scopes = _ALL
    tenant_access = _OPERATORS

    @extend_schema(operation_id="webhook_endpoints_test", request=None, responses={202: DeliveryOutput})
    def post(self, request: Request, endpoint_id: str) -> Response:
        endpoint = selectors.endpoint_get(endpoint_id=endpoint_id)
        sent = delivery.endpoint_test(endpoint=endpoint, now=timezone.now())
        return Response(
            DeliveryOutput(selectors.delivery_get(delivery_id=sent.pk)).data, status=status.HTTP_202_ACCEPTED
        )


class EndpointResendApi(ApiView):
    required_scopes = _ALL
    tenant_access = _OPERATORS

    @extend_schema(operation_id="webhook_endpoints_resend", request=ResendInput, responses={202: ResendOutput})
    def post(self, request: Request, endpoint_id: str) -> Response:
        endpoint = selectors.endpoint_get(endpoint_id=endpoint_id)
        data = validate_input(ResendInput, request.data)
        result = delivery.endpoint_resend(endpoint=endpoint, since=data["since"], now=timezone.now())
        return Response(ResendOutput(result).data, status=status.HTTP_202_ACCEPTED)


class EndpointDeliveryListApi(ApiView):
    required_scopes = _ALL
    tenant_access = _OPERATORS

    @extend_schema(
        operation_id="webhook_endpoint_deliveries_list",
        parameters=[
            *_LIST_PARAMS,
            OpenApiParameter("status", str, enum=["pending", "succeeded", "failed"]),
            OpenApiParameter("event", str),
        ],
        responses=paginated_schema(DeliveryOutput),
    )
    def get(self, request: Request, endpoint_id: str) -> Response:
        endpoint = selectors.endpoint_get(endpoint_id=endpoint_id)
        return paginate(
            request, selectors.delivery_list(endpoint=endpoint, filters=request.query_params), DeliveryOutput
        )


class DeliveryDetailApi(ApiView):
    required_scopes = _ALL
    tenant_access = _OPERATORS

    @extend_schema(operation_id="webhook_deliveries_retrieve", responses=DeliveryDetailOutput)
    def get(self, request: Request, delivery_id: str) -> Response:
        return Response(DeliveryDetailOutput(selectors.delivery_get(delivery_id=delivery_id)).data)


class DeliveryRedeliverApi(ApiView):
    required_scopes = _ALL
    tenant_access = _OPERATORS

    @extend_schema(operation_id="webhook_deliveries_redeliver", request=None, responses={202: DeliveryOutput})
    def post(self, request: Request, delivery_id: str) -> Response:
        found = selectors.delivery_get(delivery_id=delivery_id)
        delivery.delivery_redeliver(delivery=found, now=timezone.now())
        fresh = selectors.delivery_get(delivery_id=delivery_id)
        return Response(DeliveryOutput(fresh).data, status=status.HTTP_202_ACCEPTED)


class EventListApi(ApiView):
    """`GET /events`: the outbox, newest first. Shares its path with usage ingestion (`POST /events`): the
    metering view subclasses this one to answer GET there."""

    required_scopes = {"GET": _SCOPE}
    # A tenant reads the events of its own customer (those without a customer are the operator's).
    tenant_access = {"GET": TENANT_SCOPED}

    @extend_schema(
        operation_id="billing_events_list",
        parameters=[
            *_LIST_PARAMS,
            OpenApiParameter(
                "type", str, description="an event type, a prefix like invoice.*, or several, comma-separated"
            ),
            OpenApiParameter("customer", str),
            OpenApiParameter("object_id", str),
            OpenApiParameter("created_gte", str),
            OpenApiParameter("created_gt", str),
            OpenApiParameter("created_lte", str),
            OpenApiParameter("created_lt", str),
        ],
        responses=paginated_schema(EventOutput),
    )
    def get(self, request: Request) -> Response:
        events = selectors.event_list(filters=request.query_params, tenant=self.tenant_scope)
        return paginate(request, events, EventOutput)


class EventDetailApi(ApiView):
    required_scopes = {"GET": _SCOPE}
    tenant_access = {"GET": TENANT_SCOPED}

    @extend_schema(operation_id="billing_events_retrieve", responses=EventOutput)
    def get(self, request: Request, event_id: str) -> Response:
        return Response(EventOutput(selectors.event_get(event_id=event_id, tenant=self.tenant_scope)).data)


# --- Inbound --------------------------------------------------------------------------------------


@csrf_exempt
def provider_webhook(request: HttpRequest, provider: str) -> JsonResponse:
    """`POST /billing/<provider>`: verify the signature over the raw body before anything else, store the
    event once, answer 200 at once (a duplicate too); a task processes it."""
    if request.method != "POST":
        response = error_response(
            405, type="invalid_request", code="method_not_allowed", message=f"Use POST, not {request.method}."
        )
        response["Allow"] = "POST"
        return response
    if provider not in inbound.PROVIDERS:
        return error_response(404, type="not_found", code="unknown_provider", message=f"No provider {provider!r}.")
    try:
        event, created = inbound.provider_event_receive(
            provider=provider, payload=request.body, headers=dict(request.headers), now=timezone.now()
        )
    except inbound.SignatureInvalid as exc:
        logger.warning("refused a %s webhook: %s", provider, exc)
        return error_response(
            400, type="invalid_request", code="signature_invalid", message=f"Signature check failed: {exc}."
        )
    except inbound.MalformedEvent as exc:
        return error_response(400, type="invalid_request", code="malformed_event", message=str(exc))
    except inbound.ProviderNotConfigured:
        logger.error("a %s webhook arrived but its signing secret is not configured", provider)
        # Not 2xx, so the provider keeps the event and retries it once the secret is set.
        return error_response(
            503, type="api_error", code="provider_not_configured", message=f"{provider} webhooks are not configured."
        )
    return JsonResponse({"received": True, "duplicate": not created, "id": event.provider_event_id})
