"""Thin HTTP layer for invoices, one-off invoice items and tax rates."""

from __future__ import annotations

from typing import Any

from django.http import StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from billing_site.api import ApiView, paginate, paginated_schema, validate_input
from billing_site.csv_export import CsvExportMixin, csv_response
from billing_site.tenancy import OPERATORS_ONLY, TENANT_SCOPED
from customers.selectors import customer_from_input
from invoicing import exports, selectors, services
from invoicing.models import Invoice
from invoicing.serializers import (
    InvoiceCreateInput,
    InvoiceItemCreateInput,
    InvoiceItemOutput,
    InvoiceOutput,
    TaxRateCreateInput,
    TaxRateOutput,
    TaxRateUpdateInput,
    invoice_data,
)

_LIST = [OpenApiParameter("limit", int), OpenApiParameter("cursor", str)]


class _InvoiceSerializer(serializers.BaseSerializer):
    def to_representation(self, instance: Any) -> dict[str, Any]:
        return InvoiceOutput(invoice_data(instance)).data


class InvoiceListApi(ApiView):
    scope_resource = "billing"
    # A tenant reads its own invoices; issuing one is the operator's.
    tenant_access = {"GET": TENANT_SCOPED, "POST": OPERATORS_ONLY}

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
        invoices = selectors.invoice_list(filters=request.query_params, tenant=self.tenant_scope)
        return paginate(request, invoices, _InvoiceSerializer)

    @extend_schema(operation_id="invoices_create", request=InvoiceCreateInput, responses={201: InvoiceOutput})
    def post(self, request: Request) -> Response:
        data = validate_input(InvoiceCreateInput, request.data)
        customer = customer_from_input(customer_id=data.pop("customer"))
        invoice = services.invoice_create(customer=customer, now=timezone.now(), **data)
        body = InvoiceOutput(invoice_data(selectors.invoice_get(invoice_id=invoice.id))).data
        return Response(body, status=status.HTTP_201_CREATED)


class InvoiceDetailApi(ApiView):
    scope_resource = "billing"
    tenant_access = {"GET": TENANT_SCOPED}

    @extend_schema(operation_id="invoices_retrieve", responses=InvoiceOutput)
    def get(self, request: Request, invoice_id: str) -> Response:
        invoice = selectors.invoice_get(invoice_id=invoice_id, tenant=self.tenant_scope)
        return Response(InvoiceOutput(invoice_data(invoice)).data)


class _InvoiceActionApi(ApiView):
    scope_resource = "billing"
    # Finalizing, voiding and writing off invoices are the operator's decisions.
    tenant_access = {"POST": OPERATORS_ONLY}
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


class InvoiceItemListCreateApi(ApiView):
    scope_resource = "billing"
    # A tenant sees what is pending on its next invoice; adding charges is the operator's.
    tenant_access = {"GET": TENANT_SCOPED, "POST": OPERATORS_ONLY}

    @extend_schema(
        operation_id="invoice_items_list",
        parameters=[
            *_LIST,
            OpenApiParameter("customer", str),
            OpenApiParameter("subscription", str),
            OpenApiParameter("pending", bool),
        ],
        responses=paginated_schema(InvoiceItemOutput),
    )
    def get(self, request: Request) -> Response:
        items = selectors.invoice_item_list(filters=request.query_params, tenant=self.tenant_scope)
        return paginate(request, items, InvoiceItemOutput)

    @extend_schema(
        operation_id="invoice_items_create", request=InvoiceItemCreateInput, responses={201: InvoiceItemOutput}
    )
    def post(self, request: Request) -> Response:
        data = validate_input(InvoiceItemCreateInput, request.data)
        customer = customer_from_input(customer_id=data.pop("customer"))
        item = services.invoice_item_create(customer=customer, now=timezone.now(), **data)
        return Response(InvoiceItemOutput(item).data, status=status.HTTP_201_CREATED)


class InvoiceItemDetailApi(ApiView):
    scope_resource = "billing"
    tenant_access = {"GET": TENANT_SCOPED, "DELETE": OPERATORS_ONLY}

    @extend_schema(operation_id="invoice_items_retrieve", responses=InvoiceItemOutput)
    def get(self, request: Request, invoice_item_id: str) -> Response:
        item = selectors.invoice_item_get(invoice_item_id=invoice_item_id, tenant=self.tenant_scope)
        return Response(InvoiceItemOutput(item).data)

    @extend_schema(operation_id="invoice_items_delete", responses={204: None})
    def delete(self, request: Request, invoice_item_id: str) -> Response:
        item = selectors.invoice_item_get(invoice_item_id=invoice_item_id)
        services.invoice_item_delete(item=item, now=timezone.now())
        return Response(status=status.HTTP_204_NO_CONTENT)


# Tax rates are the operator's configuration.
_TAX_OPERATORS = {"GET": OPERATORS_ONLY, "POST": OPERATORS_ONLY, "PATCH": OPERATORS_ONLY}


class TaxRateListCreateApi(ApiView):
    scope_resource = "billing"
    tenant_access = _TAX_OPERATORS

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
    tenant_access = _TAX_OPERATORS

    @extend_schema(operation_id="tax_rates_retrieve", responses=TaxRateOutput)
    def get(self, request: Request, tax_rate_id: str) -> Response:
        return Response(TaxRateOutput(selectors.tax_rate_get(tax_rate_id=tax_rate_id)).data)

    @extend_schema(operation_id="tax_rates_update", request=TaxRateUpdateInput, responses=TaxRateOutput)
    def patch(self, request: Request, tax_rate_id: str) -> Response:
        rate = selectors.tax_rate_get(tax_rate_id=tax_rate_id)
        changes = validate_input(TaxRateUpdateInput, request.data, partial=True)
        return Response(TaxRateOutput(services.tax_rate_update(rate=rate, changes=changes, now=timezone.now())).data)


# --- CSV exports ----------------------------------------------------------------------------------

_EXPORT_PARAMS = [
    OpenApiParameter("customer", str),
    OpenApiParameter("subscription", str),
    OpenApiParameter("status", str, enum=[s for s, _ in Invoice.Status.choices]),
    OpenApiParameter("currency", str),
    OpenApiParameter("created_gte", str, description="RFC 3339"),
    OpenApiParameter("created_lt", str, description="RFC 3339"),
]
_CSV = {(200, "text/csv"): OpenApiResponse(description="CSV, streamed (header row first)")}


class InvoiceExportApi(CsvExportMixin, ApiView):
    """Every invoice the filters select, as CSV, streamed (no row limit). Operators only."""

    required_scopes = {"GET": "billing:read"}
    tenant_access = {"GET": OPERATORS_ONLY}

    @extend_schema(operation_id="exports_invoices", parameters=_EXPORT_PARAMS, responses=_CSV)
    def get(self, request: Request) -> StreamingHttpResponse:
        invoices = exports.invoices_for_export(filters=request.query_params)
        return csv_response("invoices.csv", exports.INVOICE_COLUMNS, exports.invoice_rows(invoices))


class InvoiceLineExportApi(CsvExportMixin, ApiView):
    """The lines of every invoice the filters select (the invoices' filters), as CSV, streamed."""

    required_scopes = {"GET": "billing:read"}
    tenant_access = {"GET": OPERATORS_ONLY}

    @extend_schema(operation_id="exports_invoice_lines", parameters=_EXPORT_PARAMS, responses=_CSV)
    def get(self, request: Request) -> StreamingHttpResponse:
        lines = exports.lines_for_export(filters=request.query_params)
        return csv_response("invoice-lines.csv", exports.LINE_COLUMNS, exports.line_rows(lines))
