"""`POST /customers/{id}/portal-sessions`: a short-lived URL to the customer's portal."""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from billing_site.api import ApiView, validate_input
from billing_site.tenancy import OPERATORS_ONLY
from customers.selectors import customer_get
from portal import services
from portal.serializers import PortalSessionCreateInput, PortalSessionOutput


class PortalSessionCreateApi(ApiView):
    scope_resource = "billing"
    # The operator's backend hands its end customer the link (as with Stripe's portal sessions).
    tenant_access = {"POST": OPERATORS_ONLY}

    @extend_schema(
        operation_id="customers_portal_sessions_create",
        summary="Create a customer portal session",
        description=(
            "A URL to the customer's portal (usage this period with a chart, the upcoming invoice, past "
            "invoices and their PDFs, balance and credit grants, payment methods), valid for "
            "PORTAL_SESSION_MINUTES (default 60). The URL is the credential: it is shown once (only its "
            "hash is stored) and opens nothing of any other customer."
        ),
        request=PortalSessionCreateInput,
        responses={201: PortalSessionOutput},
    )
    def post(self, request: Request, customer_id: str) -> Response:
        validate_input(PortalSessionCreateInput, request.data if request.data else {})
        customer = customer_get(customer_id=customer_id, tenant=self.tenant_scope)
        session, url = services.portal_session_create(customer=customer, now=timezone.now())
        body = {
            "id": session.pk,
            "object": "portal_session",
            "customer_id": session.customer_id,
            "url": url,
            "created_at": session.created_at,
            "expires_at": session.expires_at,
        }
        return Response(PortalSessionOutput(body).data, status=status.HTTP_201_CREATED)
