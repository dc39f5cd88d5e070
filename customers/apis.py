"""Thin HTTP layer: parse, call a service or selector, render. No business rules here."""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from billing_site.api import ApiView, paginate, paginated_schema, validate_input
from billing_site.errors import PermissionDeniedError
from billing_site.tenancy import OPERATORS_ONLY, TENANT_SCOPED
from customers import clocks, control_plane, selectors, services
from customers.serializers import (
    ControlPlaneEventInput,
    ControlPlaneEventOutput,
    CustomerCreateInput,
    CustomerOutput,
    CustomerUpdateInput,
    TestClockCreateInput,
    TestClockOutput,
    UserCreateInput,
    UserOutput,
    UserUpdateInput,
)

# What a tenant may change on its own customer: how to reach it. Currency, tax exemption and metadata
# are the operator's terms (a tenant must not make itself tax exempt).
TENANT_EDITABLE_FIELDS = ("name", "email", "address")

_LIST_PARAMS = [
    OpenApiParameter("limit", int, description="1-100, default 20"),
    OpenApiParameter("cursor", str, description="next_cursor of the previous page"),
]


class CustomerListCreateApi(ApiView):
    scope_resource = "customers"
    # Tenants are created by the operator (or the control plane's onboarding), never by a tenant:
    # a tenant creating customers could also probe which external ids exist (409 customer_exists).
    tenant_access = {"GET": TENANT_SCOPED, "POST": OPERATORS_ONLY}

    @extend_schema(
        operation_id="customers_list",
        parameters=[
            *_LIST_PARAMS,
            OpenApiParameter("external_id", str),
            OpenApiParameter("email", str),
            OpenApiParameter("status", str, enum=["active", "deactivated"]),
            OpenApiParameter("test_clock", str),
        ],
        responses=paginated_schema(CustomerOutput),
    )
    def get(self, request: Request) -> Response:
        customers = selectors.customer_list(filters=request.query_params, tenant=self.tenant_scope)
        return paginate(request, customers, CustomerOutput)

    @extend_schema(
        operation_id="customers_create",
        request=CustomerCreateInput,
        responses={201: CustomerOutput},
        examples=[
            OpenApiExample(
                "A tenant",
                value={
                    "external_id": "tenant-4711",
                    "name": "Acme GmbH",
                    "email": "billing@acme.example",
                    "currency": "eur",
                    "address": {"line1": "Hauptstrasse 1", "city": "Berlin", "postal_code": "10115", "country": "DE"},
                },
                request_only=True,
            ),
            OpenApiExample(
                "A tenant",
                value={
                    "id": "cus_01j9zq3y5k8m2n4p6r8t0v2x4z",
                    "object": "customer",
                    "external_id": "tenant-4711",
                    "name": "Acme GmbH",
                    "email": "billing@acme.example",
                    "currency": "eur",
                    "address": {
                        "line1": "Hauptstrasse 1",
                        "line2": None,
                        "city": "Berlin",
                        "state": None,
                        "postal_code": "10115",
                        "country": "DE",
                    },
                    "tax_exempt": "none",
                    "timezone": "Europe/Berlin",
                    "invoice_consolidation": False,
                    "metadata": {},
                    "status": "active",
                    "billing_mode": "native",
                    "billing_mode_since": None,
                    "provider_customer_id": None,
                    "test_clock": None,
                    "created_at": "2026-01-05T09:30:00Z",
                    "updated_at": "2026-01-05T09:30:00Z",
                },
                response_only=True,
                status_codes=["201"],
            ),
        ],
    )
    def post(self, request: Request) -> Response:
        data = validate_input(CustomerCreateInput, request.data)
        customer = services.customer_create(**data, now=timezone.now())
        return Response(CustomerOutput(customer).data, status=status.HTTP_201_CREATED)


class CustomerDetailApi(ApiView):
    scope_resource = "customers"
    # Deleting a tenant is offboarding: the operator's (or the control plane's) decision.
    tenant_access = {"GET": TENANT_SCOPED, "PATCH": TENANT_SCOPED, "DELETE": OPERATORS_ONLY}

    @extend_schema(operation_id="customers_retrieve", responses=CustomerOutput)
    def get(self, request: Request, customer_id: str) -> Response:
        return Response(CustomerOutput(selectors.customer_get(customer_id=customer_id, tenant=self.tenant_scope)).data)

    @extend_schema(operation_id="customers_update", request=CustomerUpdateInput, responses=CustomerOutput)
    def patch(self, request: Request, customer_id: str) -> Response:
        customer = selectors.customer_get(customer_id=customer_id, tenant=self.tenant_scope)
        changes = validate_input(CustomerUpdateInput, request.data, partial=True)
        if self.tenant_scope is not None:
            for field in changes:
                if field not in TENANT_EDITABLE_FIELDS:
                    raise PermissionDeniedError(
                        f"{field} is set by the operator; a token bound to a tenant may change only "
                        f"{', '.join(TENANT_EDITABLE_FIELDS)}.",
                        code="operator_only_field",
                        param=field,
                    )
        customer = services.customer_update(customer=customer, changes=changes, now=timezone.now())
        return Response(CustomerOutput(customer).data)

    @extend_schema(operation_id="customers_delete", responses={204: None})
    def delete(self, request: Request, customer_id: str) -> Response:
        customer = selectors.customer_get(customer_id=customer_id, tenant=self.tenant_scope)
        services.customer_delete(customer=customer, now=timezone.now())
        return Response(status=status.HTTP_204_NO_CONTENT)


class CustomerRestoreApi(ApiView):
    scope_resource = "customers"
    tenant_access = {"POST": OPERATORS_ONLY}

    @extend_schema(operation_id="customers_restore", request=None, responses=CustomerOutput)
    def post(self, request: Request, customer_id: str) -> Response:
        customer = selectors.customer_get(customer_id=customer_id, include_deleted=True, tenant=self.tenant_scope)
        customer = services.customer_restore(customer=customer, now=timezone.now())
        return Response(CustomerOutput(customer).data)


class CustomerPurgeApi(ApiView):
    scope_resource = "customers"
    tenant_access = {"POST": OPERATORS_ONLY}

    @extend_schema(operation_id="customers_purge", request=None, responses=CustomerOutput)
    def post(self, request: Request, customer_id: str) -> Response:
        customer = selectors.customer_get(customer_id=customer_id, include_deleted=True, tenant=self.tenant_scope)
        customer = services.customer_purge(customer=customer, now=timezone.now())
        return Response(CustomerOutput(customer).data)


class CustomerUserListCreateApi(ApiView):
    scope_resource = "customers"
    # A tenant manages its own users (the auth interface's per-operation user scopes).
    tenant_access = {"GET": TENANT_SCOPED, "POST": TENANT_SCOPED}

    @extend_schema(
        operation_id="customer_users_list",
        parameters=[*_LIST_PARAMS, OpenApiParameter("status", str, enum=["enabled", "disabled"])],
        responses=paginated_schema(UserOutput),
    )
    def get(self, request: Request, customer_id: str) -> Response:
        customer = selectors.customer_get(customer_id=customer_id, tenant=self.tenant_scope)
        users = selectors.customer_user_list(customer=customer, filters=request.query_params)
        return paginate(request, users, UserOutput)

    @extend_schema(operation_id="customer_users_create", request=UserCreateInput, responses={201: UserOutput})
    def post(self, request: Request, customer_id: str) -> Response:
        customer = selectors.customer_get(customer_id=customer_id, tenant=self.tenant_scope)
        data = validate_input(UserCreateInput, request.data)
        user = services.customer_user_create(customer=customer, **data, now=timezone.now())
        return Response(UserOutput(user).data, status=status.HTTP_201_CREATED)


class UserDetailApi(ApiView):
    scope_resource = "customers"
    tenant_access = {"GET": TENANT_SCOPED, "PATCH": TENANT_SCOPED, "DELETE": TENANT_SCOPED}

    @extend_schema(operation_id="users_retrieve", responses=UserOutput)
    def get(self, request: Request, user_id: str) -> Response:
        return Response(UserOutput(selectors.customer_user_get(user_id=user_id, tenant=self.tenant_scope)).data)

    @extend_schema(operation_id="users_update", request=UserUpdateInput, responses=UserOutput)
    def patch(self, request: Request, user_id: str) -> Response:
        user = selectors.customer_user_get(user_id=user_id, tenant=self.tenant_scope)
        changes = validate_input(UserUpdateInput, request.data, partial=True)
        user = services.customer_user_update(user=user, changes=changes, now=timezone.now())
        return Response(UserOutput(user).data)

    @extend_schema(operation_id="users_delete", responses={204: None})
    def delete(self, request: Request, user_id: str) -> Response:
        user = selectors.customer_user_get(user_id=user_id, tenant=self.tenant_scope)
        services.customer_user_delete(user=user, now=timezone.now())
        return Response(status=status.HTTP_204_NO_CONTENT)


class UserEnableApi(ApiView):
    scope_resource = "customers"
    tenant_access = {"POST": TENANT_SCOPED}
    enabled = True

    @extend_schema(request=None, responses=UserOutput)
    def post(self, request: Request, user_id: str) -> Response:
        user = selectors.customer_user_get(user_id=user_id, tenant=self.tenant_scope)
        user = services.customer_user_set_enabled(user=user, enabled=self.enabled, now=timezone.now())
        return Response(UserOutput(user).data)


class UserDisableApi(UserEnableApi):
    enabled = False


class ControlPlaneEventApi(ApiView):
    scope_resource = "customers"
    # The control plane speaks for every tenant; a tenant's token must not offboard its neighbours.
    tenant_access = {"POST": OPERATORS_ONLY}

    @extend_schema(
        operation_id="control_plane_events_create",
        request=ControlPlaneEventInput,
        responses={202: ControlPlaneEventOutput},
    )
    def post(self, request: Request) -> Response:
        # The raw body, not request.data: the control plane's parser stores whatever arrives (see
        # customers.control_plane.envelope), where DRF's would fail before anything is recorded.
        event = control_plane.control_plane_event_receive(body=request.body, now=timezone.now())
        body: dict[str, Any] = {
            "status": event.status,
            "detail_type": event.detail_type,
            "customer": event.customer_id,
            "result": event.result,
            "details": event.details,
        }
        return Response(body, status=status.HTTP_202_ACCEPTED)


# --- Test clocks (test mode) ------------------------------------------------------------------------


class TestClockListCreateApi(ApiView):
    """Test clocks are the operator's test tool: operators only, scope billing (they move billing time)."""

    scope_resource = "billing"
    tenant_access = {"GET": OPERATORS_ONLY, "POST": OPERATORS_ONLY}

    @extend_schema(
        operation_id="test_clocks_list",
        parameters=[*_LIST_PARAMS, OpenApiParameter("status", str, enum=["ready", "advancing", "internal_failure"])],
        responses=paginated_schema(TestClockOutput),
    )
    def get(self, request: Request) -> Response:
        clocks.test_clocks_enabled_check()
        return paginate(request, clocks.test_clock_list(filters=request.query_params), TestClockOutput)

    @extend_schema(operation_id="test_clocks_create", request=TestClockCreateInput, responses={201: TestClockOutput})
    def post(self, request: Request) -> Response:
        data = validate_input(TestClockCreateInput, request.data)
        clock = clocks.test_clock_create(**data, now=timezone.now())
        return Response(TestClockOutput(clock).data, status=status.HTTP_201_CREATED)


class TestClockDetailApi(ApiView):
    scope_resource = "billing"
    tenant_access = {"GET": OPERATORS_ONLY, "DELETE": OPERATORS_ONLY}

    @extend_schema(operation_id="test_clocks_retrieve", responses=TestClockOutput)
    def get(self, request: Request, clock_id: str) -> Response:
        clocks.test_clocks_enabled_check()
        return Response(TestClockOutput(clocks.test_clock_get(clock_id=clock_id)).data)

    @extend_schema(operation_id="test_clocks_delete", responses={204: None})
    def delete(self, request: Request, clock_id: str) -> Response:
        clocks.test_clocks_enabled_check()
        clocks.test_clock_delete(clock=clocks.test_clock_get(clock_id=clock_id), now=timezone.now())
        return Response(status=status.HTTP_204_NO_CONTENT)
