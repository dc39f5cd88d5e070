"""Thin HTTP layer for customer balances, credit grants (scope `payments`) and credit notes (`billing`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import django_filters
from django.db.models import QuerySet
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from billing_site.api import ApiView, paginate, paginated_schema, validate_input
from billing_site.errors import InvalidRequest, NotFound
from billing_site.selectors import apply_filters
from customers.models import Customer
from customers.selectors import customer_from_input, customer_get
from invoicing.models import Invoice
from payments import credit_notes, grants, ledger
from payments.models import BalanceTransaction, CreditGrant
from payments.serializers_ledger import (
    BalanceTransactionCreateInput,
    BalanceTransactionOutput,
    CreditGrantCreateInput,
    CreditGrantOutput,
    CreditNoteCreateInput,
    CreditNoteOutput,
    CustomerBalanceOutput,
)

_LIST = [OpenApiParameter("limit", int, description="1-100, default 20"), OpenApiParameter("cursor", str)]


def _currency_or_customers(data: Mapping[str, Any], customer: Customer) -> str:
    currency = data.get("currency") or customer.currency
    if not currency:
        raise InvalidRequest(
            "currency is required: the customer has no default currency.", param="currency", code="parameter_missing"
        )
    return currency


# --- Filters and selectors ------------------------------------------------------------------------


class BalanceTransactionFilter(django_filters.FilterSet):
    currency = django_filters.CharFilter(method="_currency")
    type = django_filters.ChoiceFilter(choices=BalanceTransaction.Type.choices)

    class Meta:
        model = BalanceTransaction
        fields = ("currency", "type")

    def _currency(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(currency=value.lower())


class CreditGrantFilter(django_filters.FilterSet):
    customer = django_filters.CharFilter(field_name="customer_id")
    currency = django_filters.CharFilter(method="_currency")
    status = django_filters.ChoiceFilter(choices=CreditGrant.Status.choices)

    class Meta:
        model = CreditGrant
        fields = ("customer", "currency", "status")

    def _currency(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(currency=value.lower())


def _grant_get(grant_id: str) -> CreditGrant:
    grant = grants.with_burned(CreditGrant.objects.filter(pk=grant_id)).first()
    if grant is None:
        raise NotFound(f"No such credit grant: {grant_id}", param="id")
    return grant


# --- Balances -------------------------------------------------------------------------------------


class CustomerBalanceApi(ApiView):
    scope_resource = "payments"

    @extend_schema(operation_id="customer_balance_retrieve", responses=CustomerBalanceOutput)
    def get(self, request: Request, customer_id: str) -> Response:
        customer = customer_get(customer_id=customer_id)
        body = {
            "object": "customer_balance",
            "customer": customer.id,
            "balances": [{"currency": b.currency, "balance": b.balance} for b in ledger.balance_list(customer)],
        }
        return Response(CustomerBalanceOutput(body).data)


class CustomerBalanceTransactionListCreateApi(ApiView):
    scope_resource = "payments"

    @extend_schema(
        operation_id="customer_balance_transactions_list",
        parameters=[*_LIST, OpenApiParameter("currency", str), OpenApiParameter("type", str)],
        responses=paginated_schema(BalanceTransactionOutput),
    )
    def get(self, request: Request, customer_id: str) -> Response:
        customer = customer_get(customer_id=customer_id)
        queryset = apply_filters(
            BalanceTransactionFilter, request.query_params, BalanceTransaction.objects.filter(customer=customer)
        )
        return paginate(request, queryset, BalanceTransactionOutput)

    @extend_schema(
        operation_id="customer_balance_transactions_create",
        request=BalanceTransactionCreateInput,
        responses={201: BalanceTransactionOutput},
    )
    def post(self, request: Request, customer_id: str) -> Response:
        customer = customer_get(customer_id=customer_id)
        data = validate_input(BalanceTransactionCreateInput, request.data)
        txn = ledger.balance_adjust(
            customer=customer,
            amount=data["amount"],
            currency=_currency_or_customers(data, customer),
            type=BalanceTransaction.Type.ADJUSTMENT,
            description=data.get("description", ""),
            now=timezone.now(),
        )
        return Response(BalanceTransactionOutput(txn).data, status=status.HTTP_201_CREATED)


# --- Credit grants --------------------------------------------------------------------------------


class CreditGrantListCreateApi(ApiView):
    scope_resource = "payments"

    @extend_schema(
        operation_id="credit_grants_list",
        parameters=[
            *_LIST,
            OpenApiParameter("customer", str),
            OpenApiParameter("currency", str),
            OpenApiParameter("status", str, enum=list(CreditGrant.Status.values)),
        ],
        responses=paginated_schema(CreditGrantOutput),
    )
    def get(self, request: Request) -> Response:
        queryset = apply_filters(CreditGrantFilter, request.query_params, grants.with_burned(CreditGrant.objects.all()))
        return paginate(request, queryset, CreditGrantOutput)

    @extend_schema(
        operation_id="credit_grants_create", request=CreditGrantCreateInput, responses={201: CreditGrantOutput}
    )
    def post(self, request: Request) -> Response:
        data = validate_input(CreditGrantCreateInput, request.data)
        customer = customer_from_input(customer_id=data["customer"])
        grant = grants.credit_grant_create(
            customer=customer,
            amount=data["amount"],
            currency=_currency_or_customers(data, customer),
            priority=data.get("priority", 50),
            effective_at=data.get("effective_at"),
            expires_at=data.get("expires_at"),
            meters=data.get("meters"),
            prices=data.get("prices"),
            name=data.get("name", ""),
            metadata={k: v for k, v in data.get("metadata", {}).items() if v},
            now=timezone.now(),
        )
        return Response(CreditGrantOutput(_grant_get(grant.id)).data, status=status.HTTP_201_CREATED)


class CreditGrantDetailApi(ApiView):
    scope_resource = "payments"

    @extend_schema(operation_id="credit_grants_retrieve", responses=CreditGrantOutput)
    def get(self, request: Request, credit_grant_id: str) -> Response:
        return Response(CreditGrantOutput(_grant_get(credit_grant_id)).data)


class CreditGrantVoidApi(ApiView):
    scope_resource = "payments"

    @extend_schema(operation_id="credit_grants_void", request=None, responses=CreditGrantOutput)
    def post(self, request: Request, credit_grant_id: str) -> Response:
        grant = grants.credit_grant_void(grant=_grant_get(credit_grant_id), now=timezone.now())
        return Response(CreditGrantOutput(_grant_get(grant.id)).data)


# --- Credit notes ---------------------------------------------------------------------------------


class CreditNoteListCreateApi(ApiView):
    scope_resource = "billing"

    @extend_schema(
        operation_id="credit_notes_list",
        parameters=[
            *_LIST,
            OpenApiParameter("invoice", str),
            OpenApiParameter("customer", str),
            OpenApiParameter("status", str, enum=["issued", "void"]),
        ],
        responses=paginated_schema(CreditNoteOutput),
    )
    def get(self, request: Request) -> Response:
        return paginate(request, credit_notes.credit_note_list(filters=request.query_params), CreditNoteOutput)

    @extend_schema(operation_id="credit_notes_create", request=CreditNoteCreateInput, responses={201: CreditNoteOutput})
    def post(self, request: Request) -> Response:
        data = validate_input(CreditNoteCreateInput, request.data)
        invoice = Invoice.objects.filter(pk=data["invoice"]).first()
        if invoice is None:
            raise InvalidRequest(f"No such invoice: {data['invoice']}", param="invoice", code="resource_missing")
        note = credit_notes.credit_note_create(
            invoice=invoice,
            lines=data.get("lines"),
            amount=data.get("amount"),
            reason=data.get("reason", ""),
            memo=data.get("memo", ""),
            refund_amount=data["refund_amount"],
            credit_amount=data["credit_amount"],
            out_of_band_amount=data["out_of_band_amount"],
            now=timezone.now(),
        )
        body = CreditNoteOutput(credit_notes.credit_note_get(credit_note_id=note.id)).data
        return Response(body, status=status.HTTP_201_CREATED)


class CreditNoteDetailApi(ApiView):
    scope_resource = "billing"

    @extend_schema(operation_id="credit_notes_retrieve", responses=CreditNoteOutput)
    def get(self, request: Request, credit_note_id: str) -> Response:
        return Response(CreditNoteOutput(credit_notes.credit_note_get(credit_note_id=credit_note_id)).data)


class CreditNoteVoidApi(ApiView):
    scope_resource = "billing"

    @extend_schema(operation_id="credit_notes_void", request=None, responses=CreditNoteOutput)
    def post(self, request: Request, credit_note_id: str) -> Response:
        note = credit_notes.credit_note_get(credit_note_id=credit_note_id)
        note = credit_notes.credit_note_void(credit_note=note, now=timezone.now())
        return Response(CreditNoteOutput(credit_notes.credit_note_get(credit_note_id=note.id)).data)
