"""Admin for payments (balances, grants, methods, intents, refunds, credit notes, disputes) and, as the top
app, the operator's pages that need every app: the customer page with its subscriptions, invoices, balance
history, grants, payment methods and users; the invoice actions that move money (retry payment, refund,
credit note); and the dashboard. Every action asks for confirmation and calls one service; rows are
read-only (money moves through the services, which call the provider and record events)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from billing_site.admin_kit import (
    ChangePageActions,
    FormattedFields,
    MoneyField,
    ReadOnlyInline,
    confirm_action,
    money_text,
    to_minor,
)
from customers.admin import CustomerAdmin as BaseCustomerAdmin
from customers.models import Customer
from invoicing.admin import InvoiceAdmin as BaseInvoiceAdmin
from invoicing.models import Invoice
from payments import dashboard
from payments.models import (
    BalanceTransaction,
    CollectionAttempt,
    CreditBurn,
    CreditGrant,
    CreditNote,
    CreditNoteLine,
    CustomerBalance,
    Dispute,
    PaymentIntent,
    PaymentMethod,
    Refund,
    SetupIntent,
)
from payments.services import collection, credit_notes, grants, intents, ledger, refunds
from subscriptions.models import Subscription


class _ReadOnly(FormattedFields, ChangePageActions, admin.ModelAdmin):
    show_full_result_count = False

    def raw_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[Any]:
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


MONEY = ("amount", "amount_received", "amount_refunded", "amount_lost", "balance", "ending_balance")


def _link(obj: Any, text: Any = None) -> str:
    if obj is None:
        return "-"
    opts = obj._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
    return format_html('<a href="{}">{}</a>', url, text if text is not None else obj)


def _list_link(model: Any, text: str, **filters: str) -> str:
    opts = model._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
    query = "&".join(f"{k}={v}" for k, v in filters.items())
    return format_html('<a href="{}?{}">{}</a>', url, query, text)


# --- Forms of the actions that need input --------------------------------------------------------------


class RefundForm(forms.Form):
    amount = MoneyField(required=False, help_text="In the currency's major unit, e.g. 12.50; empty: all that is left")
    reason = forms.ChoiceField(choices=[("", "-"), *Refund.Reason.choices], required=False)


class CreditNoteForm(forms.Form):
    amount = MoneyField(label="Amount to credit")
    refund_amount = MoneyField(required=False, help_text="Of which refunded to the card (major units)")
    credit_amount = MoneyField(required=False, help_text="Of which credited to the customer's balance")
    out_of_band_amount = MoneyField(required=False, help_text="Of which given back outside this service")
    reason = forms.ChoiceField(choices=[("", "-"), *CreditNote.Reason.choices], required=False)
    memo = forms.CharField(required=False, max_length=1000, widget=forms.Textarea(attrs={"rows": 2}))


class BalanceAdjustForm(forms.Form):
    amount = MoneyField(allow_negative=True, help_text="Major units; positive adds credit, negative takes it away")
    currency = forms.CharField(required=False, max_length=3, help_text="Empty: the customer's currency")
    description = forms.CharField(required=False, max_length=350)


class CreditGrantForm(forms.Form):
    amount = MoneyField()
    currency = forms.CharField(required=False, max_length=3, help_text="Empty: the customer's currency")
    name = forms.CharField(required=False, max_length=255)
    priority = forms.IntegerField(required=False, min_value=0, max_value=100, initial=50)
    expires_at = forms.DateTimeField(required=False, help_text="UTC, e.g. 2027-01-31 00:00:00; empty: never")


def _minor(value: Any, currency: str, param: str) -> int:
    return 0 if value is None else to_minor(value, currency, param=param)


def _refund_message(refund: Refund) -> str:
    text = f"refund {refund.id} of {money_text(refund.amount, refund.currency)} is {refund.status}"
    if refund.status == Refund.Status.FAILED and isinstance(refund.last_error, dict):
        text += f" ({refund.last_error.get('message') or refund.last_error.get('code', '')})"
    return text


def invoice_refund(invoice: Invoice, *, now: Any, amount: Any, reason: str) -> str:
    refund = refunds.refund_create(
        invoice=invoice,
        amount=None if amount is None else to_minor(amount, invoice.currency),
        reason=reason or "",
        now=now,
    )
    return _refund_message(refund)


def intent_refund(intent: PaymentIntent, *, now: Any, amount: Any, reason: str) -> str:
    refund = refunds.refund_create(
        payment_intent=intent,
        amount=None if amount is None else to_minor(amount, intent.currency),
        reason=reason or "",
        now=now,
    )
    return _refund_message(refund)


def invoice_credit_note(invoice: Invoice, *, now: Any, amount: Any, reason: str, memo: str, **split: Any) -> str:
    note = credit_notes.credit_note_create(
        invoice=invoice,
        amount=to_minor(amount, invoice.currency),
        reason=reason or "",
        memo=memo or "",
        now=now,
        **{name: _minor(value, invoice.currency, name) for name, value in split.items()},
    )
    return f"credit note {note.number or note.id} of {money_text(note.amount, note.currency)} issued"


def invoice_retry_payment(invoice: Invoice, *, now: Any) -> str:
    result = collection.invoice_collect(invoice=invoice, trigger=CollectionAttempt.Trigger.API, now=now)
    attempt, after = result.attempt, result.invoice
    if attempt.success:
        return f"paid, now {after.status}"
    return f"not paid ({attempt.error or 'no payment'}); {money_text(after.amount_remaining, after.currency)} remaining"


def _currency(data: dict[str, Any], customer: Customer) -> str:
    return (data.get("currency") or customer.currency or "").lower()


def customer_balance_adjust(customer: Customer, *, now: Any, **data: Any) -> str:
    currency = _currency(data, customer)
    txn = ledger.balance_adjust(
        customer=customer,
        amount=to_minor(data["amount"], currency) if currency else 0,
        currency=currency,
        type=BalanceTransaction.Type.ADJUSTMENT,
        description=data.get("description") or "",
        now=now,
    )
    return f"balance now {money_text(txn.ending_balance, txn.currency)}"


def customer_credit_grant(customer: Customer, *, now: Any, **data: Any) -> str:
    currency = _currency(data, customer)
    grant = grants.credit_grant_create(
        customer=customer,
        amount=to_minor(data["amount"], currency) if currency else 0,
        currency=currency,
        name=data.get("name") or "",
        priority=50 if data.get("priority") is None else data["priority"],
        expires_at=data.get("expires_at"),
        now=now,
    )
    return f"credit grant {grant.id} of {money_text(grant.amount, grant.currency)}"


# --- The customer page ---------------------------------------------------------------------------------

INLINE_ROWS = 20  # the latest rows of each kind; the inline's title links to the full, filtered list


class _LatestFormSet(BaseInlineFormSet):
    def get_queryset(self) -> QuerySet[Any]:
        # The customer's latest rows only (the formset has already filtered by the customer and ordered).
        return super().get_queryset()[:INLINE_ROWS]


class _LatestInline(ReadOnlyInline):
    formset = _LatestFormSet


class SubscriptionInline(_LatestInline):
    model = Subscription
    fields = ("id", "status", "currency", "current_period_start", "current_period_end", "cancel_at_period_end")
    ordering = ("-created_at",)
    verbose_name_plural = f"Subscriptions (latest {INLINE_ROWS})"


class InvoiceInline(_LatestInline):
    model = Invoice
    fields = ("number", "status", "total", "amount_remaining", "period_start", "due_date", "finalized_at")
    money_fields = ("total", "amount_remaining")
    ordering = ("-created_at",)
    verbose_name_plural = f"Invoices (latest {INLINE_ROWS})"


class CustomerBalanceTransactionInline(_LatestInline):
    model = BalanceTransaction
    fk_name = "customer"
    fields = ("type", "amount", "ending_balance", "description", "invoice", "credit_note", "created_at")
    money_fields = ("amount", "ending_balance")
    ordering = ("-created_at", "-id")
    verbose_name_plural = f"Balance history (latest {INLINE_ROWS})"


class CustomerCreditGrantInline(_LatestInline):
    model = CreditGrant
    fields = ("name", "amount", "priority", "status", "effective_at", "expires_at")
    money_fields = ("amount",)
    ordering = ("-created_at",)
    verbose_name_plural = f"Credit grants (latest {INLINE_ROWS})"


class CustomerPaymentMethodInline(_LatestInline):
    model = PaymentMethod
    fields = ("provider", "brand", "last4", "exp_month", "exp_year", "is_default", "detached_at")
    ordering = ("-created_at",)
    verbose_name_plural = "Payment methods"


admin.site.unregister(Customer)


@admin.register(Customer)
class CustomerAdmin(BaseCustomerAdmin):
    """customers' admin with what the higher apps know of the customer: read-only inlines that link to
    each row, the balances, and the money actions."""

    inlines = (
        *BaseCustomerAdmin.inlines,
        SubscriptionInline,
        InvoiceInline,
        CustomerBalanceTransactionInline,
        CustomerCreditGrantInline,
        CustomerPaymentMethodInline,
    )
    actions = (*BaseCustomerAdmin.actions, "adjust_balance", "grant_credit")

    def raw_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[Any]:
        return [*super().raw_readonly_fields(request, obj), "balances", "everything"]

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        fieldsets = list(super().get_fieldsets(request, obj))
        if obj is not None:
            fieldsets.insert(1, ("Money", {"fields": ("balances", "everything")}))
        return fieldsets

    @admin.display(description="balances")
    def balances(self, obj: Customer) -> str:
        rows = CustomerBalance.objects.filter(customer=obj).order_by("currency")
        if not rows:
            return "-"
        return format_html_join(", ", "{}", ((money_text(b.balance, b.currency),) for b in rows))

    @admin.display(description="all of this customer's")
    def everything(self, obj: Customer) -> str:
        links = [
            _list_link(Subscription, "subscriptions", customer__id__exact=obj.pk),
            _list_link(Invoice, "invoices", customer__id__exact=obj.pk),
            _list_link(PaymentIntent, "payments", customer__id__exact=obj.pk),
            _list_link(BalanceTransaction, "balance transactions", customer__id__exact=obj.pk),
            _list_link(CreditGrant, "credit grants", customer__id__exact=obj.pk),
            _list_link(CreditNote, "credit notes", customer__id__exact=obj.pk),
            _list_link(PaymentMethod, "payment methods", customer__id__exact=obj.pk),
        ]
        return format_html_join(" · ", "{}", ((link,) for link in links))

    adjust_balance = confirm_action(
        description="Adjust balance",
        label="Balance adjusted",
        form=BalanceAdjustForm,
        run=customer_balance_adjust,
        explanation="Writes an adjustment entry to the customer's balance ledger (kept forever).",
    )
    grant_credit = confirm_action(
        description="Grant credit",
        label="Credit granted",
        form=CreditGrantForm,
        run=customer_credit_grant,
        explanation="Credit is spent on invoices before the balance and the card.",
    )


# --- Invoices: the money actions of payments on invoicing's admin -------------------------------------


class InvoiceRefundInline(ReadOnlyInline):
    model = Refund
    fk_name = "invoice"
    fields = ("id", "amount", "status", "reason", "created_at")
    money_fields = ("amount",)
    verbose_name_plural = "Refunds"


class InvoiceCreditNoteInline(ReadOnlyInline):
    model = CreditNote
    fields = ("number", "amount", "status", "reason", "created_at")
    money_fields = ("amount",)
    verbose_name_plural = "Credit notes"


class InvoicePaymentInline(ReadOnlyInline):
    model = PaymentIntent
    fk_name = "invoice"
    fields = ("id", "amount", "status", "amount_received", "amount_refunded", "created_at")
    money_fields = ("amount", "amount_received", "amount_refunded")
    verbose_name_plural = "Payments"


admin.site.unregister(Invoice)


@admin.register(Invoice)
class InvoiceAdmin(BaseInvoiceAdmin):
    inlines = (*BaseInvoiceAdmin.inlines, InvoicePaymentInline, InvoiceRefundInline, InvoiceCreditNoteInline)
    actions = (*BaseInvoiceAdmin.actions, "retry_payment", "refund", "issue_credit_note")

    retry_payment = confirm_action(
        description="Retry payment",
        label="Collection attempted",
        run=invoice_retry_payment,
        explanation="Credits, then the balance, then the default payment method, as the collection job does.",
    )
    refund = confirm_action(
        description="Refund",
        label="Refund created",
        form=RefundForm,
        run=invoice_refund,
        explanation="Refunds the invoice's payment at the provider (never more than was received).",
        danger=True,
    )
    issue_credit_note = confirm_action(
        description="Issue credit note",
        label="Credit note issued",
        form=CreditNoteForm,
        run=invoice_credit_note,
        explanation="Open invoice: the credit first reduces what is due, the rest is split as given. Paid invoice: "
        "refund + balance credit + out of band must add up to the amount.",
    )


# --- payments' own rows ---------------------------------------------------------------------------------


@admin.register(PaymentMethod)
class PaymentMethodAdmin(_ReadOnly):
    list_display = ("id", "customer", "provider", "brand", "last4", "is_default", "detached_at", "created_at")
    list_filter = ("provider", "is_default", "brand")
    search_fields = ("=id", "=customer__id", "customer__external_id", "=provider_ref")
    list_select_related = ("customer",)


@admin.register(SetupIntent)
class SetupIntentAdmin(_ReadOnly):
    list_display = ("id", "customer", "status", "usage", "payment_method", "provider", "created_at")
    list_filter = ("status", "provider")
    search_fields = ("=id", "=customer__id", "customer__external_id", "=provider_ref")
    list_select_related = ("customer",)
    exclude = ("token",)  # a card token is not for display

    def raw_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[Any]:
        return [f.name for f in self.model._meta.fields if f.name != "token"]


class RefundInline(ReadOnlyInline):
    model = Refund
    fields = ("id", "amount", "status", "reason", "provider_ref", "created_at")
    money_fields = ("amount",)


class DisputeInline(ReadOnlyInline):
    model = Dispute
    fields = ("id", "amount", "status", "reason", "amount_lost", "evidence_due_by", "provider_ref")
    money_fields = ("amount", "amount_lost")


@admin.register(PaymentIntent)
class PaymentIntentAdmin(_ReadOnly):
    list_display = ("id", "customer", "invoice", "amount", "status", "amount_received", "amount_refunded", "created_at")
    list_filter = ("status", "provider", "capture_method", "currency")
    search_fields = ("=id", "=customer__id", "customer__external_id", "=invoice__id", "=provider_ref")
    list_select_related = ("customer", "invoice")
    money_fields = ("amount", "amount_received", "amount_refunded", "amount_capturable")
    inlines = (RefundInline, DisputeInline)
    actions = ("refund", "cancel", "resolve_now")
    date_hierarchy = "created_at"

    refund = confirm_action(
        description="Refund",
        label="Refund created",
        form=RefundForm,
        run=intent_refund,
        explanation="Refunds at the provider; never more than was received.",
        danger=True,
    )
    cancel = confirm_action(
        description="Cancel (releases an authorization)",
        label="Canceled",
        run=lambda pi, now: intents.payment_intent_cancel(payment_intent=pi, cancellation_reason="abandoned", now=now),
        danger=True,
    )
    resolve_now = confirm_action(
        description="Resolve unknown now",
        label="Resolved",
        run=lambda pi, now: intents.payment_intent_resolve(payment_intent=pi, now=now) and None,
        explanation="Reads the provider to settle a payment whose answer was lost; never charges.",
    )


@admin.register(Refund)
class RefundAdmin(_ReadOnly):
    list_display = ("id", "payment_intent", "invoice", "amount", "status", "reason", "created_at")
    list_filter = ("status", "reason", "currency")
    search_fields = ("=id", "=payment_intent__id", "=invoice__id", "=provider_ref")
    list_select_related = ("payment_intent", "invoice")
    money_fields = ("amount",)
    date_hierarchy = "created_at"


@admin.register(Dispute)
class DisputeAdmin(_ReadOnly):
    """Read-only: disputes come from the provider's webhooks (answer them with evidence at the provider)."""

    list_display = ("id", "customer", "payment_intent", "amount", "status", "reason", "amount_lost", "evidence_due_by")
    list_filter = ("status", "reason", "currency", "provider")
    search_fields = ("=id", "=customer__id", "customer__external_id", "=payment_intent__id", "=provider_ref")
    list_select_related = ("customer", "payment_intent")
    money_fields = ("amount", "amount_lost")
    date_hierarchy = "created_at"

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(CollectionAttempt)
class CollectionAttemptAdmin(_ReadOnly):
    """Every collection attempt (the job's, dunning's, an operator's "Retry payment"): what each step took."""

    list_display = ("id", "invoice", "trigger", "success", "amount_charged", "error", "created_at")
    list_filter = ("success", "trigger")
    search_fields = ("=invoice__id", "=invoice__number", "=provider_ref", "=payment_intent__id")
    list_select_related = ("invoice",)
    money_fields = ("credit_used", "balance_used", "provider_used", "amount_charged")
    money_currency = "invoice.currency"
    date_hierarchy = "created_at"

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# --- Balances, credit grants, credit notes (payments/ledger.py, grants.py, credit_notes.py) ---------


class BalanceTransactionInline(ReadOnlyInline):
    model = BalanceTransaction
    fk_name = "balance"
    fields = ("id", "type", "amount", "ending_balance", "description", "invoice", "credit_note", "created_at")
    money_fields = ("amount", "ending_balance")
    ordering = ("-id",)


@admin.register(CustomerBalance)
class CustomerBalanceAdmin(_ReadOnly):
    """Balances change only through the ledger (the customer page's "Adjust balance"), never by editing."""

    list_display = ("customer", "currency", "balance", "updated_at")
    list_filter = ("currency",)
    search_fields = ("=customer__id", "customer__external_id")
    list_select_related = ("customer",)
    money_fields = ("balance",)
    inlines = (BalanceTransactionInline,)


@admin.register(BalanceTransaction)
class BalanceTransactionAdmin(_ReadOnly):
    list_display = ("id", "customer", "type", "amount", "ending_balance", "invoice", "created_at")
    list_filter = ("type", "currency")
    search_fields = ("=id", "=customer__id", "customer__external_id", "=invoice__id", "=credit_note__id")
    list_select_related = ("customer", "invoice")
    money_fields = ("amount", "ending_balance")
    date_hierarchy = "created_at"


class CreditBurnInline(ReadOnlyInline):
    model = CreditBurn
    fields = ("invoice", "invoice_line", "amount", "created_at")
    money_fields = ("amount",)
    money_currency = "grant.currency"
    show_change_link = False


@admin.register(CreditGrant)
class CreditGrantAdmin(_ReadOnly):
    list_display = ("id", "customer", "name", "amount", "priority", "status", "expires_at", "created_at")
    list_filter = ("status", "currency")
    search_fields = ("=id", "=customer__id", "customer__external_id", "name")
    list_select_related = ("customer",)
    money_fields = ("amount",)
    inlines = (CreditBurnInline,)
    actions = ("void",)

    def raw_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[Any]:
        return [*super().raw_readonly_fields(request, obj), "remaining"]

    @admin.display(description="Remaining")
    def remaining(self, obj: CreditGrant) -> str:
        return money_text(grants.credit_grant_remaining(obj), obj.currency)

    void = confirm_action(
        description="Void credit grant",
        label="Voided",
        run=lambda g, now: grants.credit_grant_void(grant=g, now=now) and None,
        explanation="The remaining credit becomes unusable; what was spent stays spent.",
        danger=True,
    )


class CreditNoteLineInline(ReadOnlyInline):
    model = CreditNoteLine
    fields = ("invoice_line", "description", "quantity", "amount")
    money_fields = ("amount",)
    money_currency = "credit_note.currency"
    quantity_fields = ("quantity",)
    show_change_link = False


@admin.register(CreditNote)
class CreditNoteAdmin(_ReadOnly):
    """Registered here, not in invoicing: issuing and voiding go through payments' services."""

    list_display = ("number", "id", "invoice", "customer", "amount", "status", "reason", "created_at")
    list_filter = ("status", "reason", "currency")
    search_fields = ("=number", "=id", "=invoice__id", "=customer__id", "customer__external_id")
    list_select_related = ("customer", "invoice")
    money_fields = ("amount", "tax", "refund_amount", "credit_amount", "out_of_band_amount", "invoice_amount")
    inlines = (CreditNoteLineInline,)
    actions = ("void",)
    date_hierarchy = "created_at"

    void = confirm_action(
        description="Void credit note",
        label="Voided",
        run=lambda cn, now: credit_notes.credit_note_void(credit_note=cn, now=now) and None,
        explanation="Gives the credit back; refused once refunded or spent.",
        danger=True,
    )


# --- The dashboard (admin/dashboard/, linked from the admin index) --------------------------------------


def dashboard_view(request: HttpRequest) -> HttpResponse:
    figures = dashboard.dashboard_read(now=timezone.now())
    invoices = reverse("admin:invoicing_invoice_changelist")

    def rows(items: list[dashboard.CurrencyFigure]) -> list[dict[str, Any]]:
        return [
            {"currency": f.currency, "count": f.count, "amount_text": money_text(f.amount, f.currency)} for f in items
        ]

    sections = [
        {
            "key": "open",
            "title": "Open receivables",
            "count_label": "Invoices",
            "rows": rows(figures.open_receivables),
            "link": f"{invoices}?status__exact=open",
        },
        {
            "key": "overdue",
            "title": "Overdue receivables",
            "count_label": "Invoices",
            "rows": rows(figures.overdue_receivables),
            "link": f"{invoices}?overdue=yes",
            "help": "Open invoices past their due date.",
        },
        {
            "key": "invoiced",
            "title": f"Invoiced in {figures.month_start:%B %Y}",
            "count_label": "Invoices",
            "rows": rows(figures.invoiced_this_month),
            "link": invoices,
            "help": "Totals of invoices finalized this month (UTC), voided ones excluded.",
        },
        {
            "key": "mrr",
            "title": "MRR",
            "count_label": "Subscriptions",
            "rows": rows(figures.mrr),
            "link": reverse("admin:subscriptions_subscription_changelist"),
            "help": "Licensed prices of active and past-due subscriptions, per month; usage, discounts and tax "
            "are not included.",
        },
    ]
    context = {
        **admin.site.each_context(request),
        "title": "Dashboard",
        "dashboard": figures,
        "sections": sections,
        "failed_link": reverse("admin:payments_collectionattempt_changelist") + "?success__exact=0",
    }
    return TemplateResponse(request, "admin/payments/dashboard.html", context)
