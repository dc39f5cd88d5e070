"""The end customer's pages: the hosted invoice page (`/i/<token>`) and the portal (`/portal/<token>/`).

Plain Django views rendering templates; every write goes through `portal.services` (which calls payments'
services), every form is CSRF-protected (Django's middleware) and carries a nonce so it acts once. The
token in the URL is the credential: pages send `Referrer-Policy: same-origin`, are never cached and ask
not to be indexed. Errors render as pages (404 for a bad, revoked or expired token) rather than JSON.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from billing_site.errors import ApiError
from invoicing.documents.apis import pdf_response
from invoicing.documents.engine import seller_context
from invoicing.documents.invoice import invoice_document_context, invoice_pdf
from invoicing.models import Invoice
from payments.models import PaymentIntent
from payments.processors import processor_name_for
from payments.processors.sandbox import CARDS
from portal import selectors, services
from portal.links import hosted_link_by_token, hosted_path
from portal.models import HostedInvoiceLink, PortalSession

# The sandbox's test cards, as the forms offer them (payments/processors/sandbox.py has what each does).
TEST_CARDS = [
    ("tok_visa", "Visa 4242: succeeds"),
    ("tok_mastercard", "Mastercard 4444: succeeds"),
    ("tok_authenticationRequired", "Visa 3184: asks for authentication (3-D Secure)"),
    ("tok_chargeDeclined", "Visa 0002: declined"),
    ("tok_insufficientFunds", "Visa 9995: declined, insufficient funds"),
]
assert all(token.removeprefix("tok_") in CARDS for token, _ in TEST_CARDS)


def _secure(response: HttpResponse) -> HttpResponse:
    # same-origin: the URL (the credential) never leaves in a Referer to another site, while our own form
    # POSTs keep their Origin header (with no-referrer browsers send "Origin: null", which CSRF refuses).
    response["Referrer-Policy"] = "same-origin"
    response["Cache-Control"] = "no-store"
    response["X-Robots-Tag"] = "noindex, nofollow"
    return response


def _error_page(request: HttpRequest, exc: ApiError) -> HttpResponse:
    status = exc.status_code if exc.status_code >= 400 else 400
    return _secure(render(request, "portal/error.html", {"message": exc.message, "code": exc.code}, status=status))


def page(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Render an ApiError raised by the view or a service as an error page with its status."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return _secure(view(request, *args, **kwargs))
        except ApiError as exc:
            return _error_page(request, exc)

    return wrapper


def _see_other(url: str) -> HttpResponseRedirect:
    response = HttpResponseRedirect(url)
    response.status_code = 303
    return response


def _processor(customer: Any) -> str:
    try:
        return processor_name_for(customer)
    except ValueError:
        return ""


def _stripe_context(processor: str) -> dict[str, Any]:
    # Stripe.js is the only external script, and only where Stripe is the processor.
    return {"stripe_key": settings.STRIPE_PUBLISHABLE_KEY if processor == "stripe" else ""}


# --- the hosted invoice page ----------------------------------------------------------------------


def _payment_view(intent: PaymentIntent | None) -> dict[str, Any] | None:
    if intent is None:
        return None
    error = (
        (intent.last_error or {}).get("message")
        if intent.status == PaymentIntent.Status.REQUIRES_PAYMENT_METHOD
        else ""
    )
    return {"id": intent.pk, "status": intent.status, "error": error or "", "provider": intent.provider}


def _hosted_context(request: HttpRequest, link: HostedInvoiceLink, **extra: Any) -> dict[str, Any]:
    now = timezone.now()
    invoice = Invoice.objects.select_related("customer").get(pk=link.invoice_id)
    base = hosted_path(link)
    shown = request.GET.get("payment", "")
    intent = PaymentIntent.objects.filter(pk=shown, invoice_id=invoice.pk).first() if shown else None
    pending = selectors.invoice_payment_in_flight(invoice)
    processor = _processor(invoice.customer)
    can_pay = invoice.status == Invoice.Status.OPEN and invoice.amount_remaining > 0 and bool(processor)
    context = {"seller": seller_context(), **invoice_document_context(invoice=invoice, now=now)}
    context.update(
        base=base,
        invoice_status=invoice.status,
        can_pay=can_pay and (pending is None or pending.status in services._ABANDONABLE),
        pay_amount=selectors.fmt_for(invoice.currency).money(invoice.amount_remaining),
        processor=processor,
        test_cards=TEST_CARDS if processor == "sandbox" else [],
        nonce=secrets.token_hex(16),
        payment=_payment_view(intent),
        pending=_payment_view(pending),
        pending_client_secret=pending.client_secret if pending and processor == "stripe" else "",
        **_stripe_context(processor),
    )
    context.update(extra)
    return context


@require_GET
@page
def hosted_invoice(request: HttpRequest, token: str) -> HttpResponse:
    link = hosted_link_by_token(token)
    return render(request, "portal/hosted_invoice.html", _hosted_context(request, link))


@require_GET
@page
def hosted_invoice_pdf(request: HttpRequest, token: str) -> HttpResponse:
    link = hosted_link_by_token(token)
    return pdf_response(invoice_pdf(invoice=link.invoice, now=timezone.now()))


@require_POST
@page
def hosted_invoice_pay(request: HttpRequest, token: str) -> HttpResponse:
    link = hosted_link_by_token(token)
    base = hosted_path(link)
    try:
        intent = services.hosted_invoice_pay(
            link=link, token=request.POST.get("token", ""), nonce=request.POST.get("nonce", ""), now=timezone.now()
        )
    except ApiError as exc:
        context = _hosted_context(request, link, form_error=exc.message)
        return render(request, "portal/hosted_invoice.html", context, status=exc.status_code)
    if intent is None:  # the same form, sent twice: the first submission is still on its way
        return _see_other(base)
    if intent.status == PaymentIntent.Status.REQUIRES_ACTION and intent.provider == "sandbox":
        return _see_other(f"{base}/authenticate/{intent.pk}")
    return _see_other(f"{base}?payment={intent.pk}")


@require_http_methods(["GET", "POST"])
@page
def hosted_invoice_authenticate(request: HttpRequest, token: str, payment_intent_id: str) -> HttpResponse:
    """The sandbox's stand-in for the bank's 3-D Secure page."""
    link = hosted_link_by_token(token)
    base = hosted_path(link)
    if request.method == "POST":
        intent = services.hosted_payment_authenticate(
            link=link,
            payment_intent_id=payment_intent_id,
            succeed=request.POST.get("outcome") == "approve",
            now=timezone.now(),
        )
        return _see_other(f"{base}?payment={intent.pk}")
    intent = services._link_intent(link, payment_intent_id)
    if intent.status != PaymentIntent.Status.REQUIRES_ACTION:
        return _see_other(f"{base}?payment={intent.pk}")
    invoice = link.invoice
    context = {
        "base": base,
        "intent": intent,
        "amount": selectors.fmt_for(intent.currency).money(intent.amount),
        "merchant": settings.SELLER_NAME or "the merchant",
        "number": invoice.number,
        "card": intent.payment_method.last4 if intent.payment_method else "",
    }
    return render(request, "portal/challenge.html", context)


@require_GET
@page
def hosted_invoice_return(request: HttpRequest, token: str) -> HttpResponse:
    """Where Stripe.js comes back after `handleNextAction`: read the outcome, show the page."""
    link = hosted_link_by_token(token)
    intent = services.hosted_payment_refresh(
        link=link, payment_intent_id=request.GET.get("payment_intent", ""), now=timezone.now()
    )
    return _see_other(f"{hosted_path(link)}?payment={intent.pk}")


# --- the portal -----------------------------------------------------------------------------------


def _session(token: str) -> PortalSession:
    return selectors.portal_session_by_token(token, now=timezone.now())


def _portal(request: HttpRequest, session: PortalSession, template: str, tab: str, **context: Any) -> HttpResponse:
    customer = session.customer
    base = {
        "customer": customer,
        "customer_name": customer.name or customer.email or customer.external_id or customer.pk,
        "root": f"/portal/{request.resolver_match.kwargs['token']}/",
        "tab": tab,
        "expires_at": session.expires_at,
    }
    return render(request, template, {**base, **context})


@require_GET
@page
def portal_overview(request: HttpRequest, token: str) -> HttpResponse:
    session = _session(token)
    now = timezone.now()
    customer = session.customer
    return _portal(
        request,
        session,
        "portal/overview.html",
        "overview",
        usage=selectors.customer_usage(customer, now=now),
        upcoming=selectors.upcoming_invoices(customer, now=now),
        balances=selectors.balances(customer),
        grants=selectors.credit_grants(customer),
    )


@require_GET
@page
def portal_invoices(request: HttpRequest, token: str) -> HttpResponse:
    session = _session(token)
    rows = []
    for invoice in selectors.customer_invoices(session.customer):
        fmt = selectors.fmt_for(invoice.currency)
        live = [link for link in invoice.hosted_links.all() if link.revoked_at is None]
        rows.append(
            {
                "id": invoice.pk,
                "number": invoice.number,
                "date": fmt.date(invoice.finalized_at),
                "status": invoice.status,
                "total": fmt.money(invoice.total),
                "remaining": fmt.money(invoice.amount_remaining),
                "hosted": hosted_path(live[0]) if live else "",
            }
        )
    return _portal(request, session, "portal/invoices.html", "invoices", invoices=rows)


@require_GET
@page
def portal_invoice_pdf(request: HttpRequest, token: str, invoice_id: str) -> HttpResponse:
    session = _session(token)
    invoice = selectors.customer_invoice(session.customer, invoice_id)
    return pdf_response(invoice_pdf(invoice=invoice, now=timezone.now()))


def _methods_page(request: HttpRequest, session: PortalSession, status: int = 200, **extra: Any) -> HttpResponse:
    processor = _processor(session.customer)
    response = _portal(
        request,
        session,
        "portal/payment_methods.html",
        "payment_methods",
        methods=selectors.customer_methods(session.customer),
        processor=processor,
        test_cards=TEST_CARDS if processor == "sandbox" else [],
        nonce=secrets.token_hex(16),
        **_stripe_context(processor),
        **extra,
    )
    response.status_code = status
    return response


@require_http_methods(["GET", "POST"])
@page
def portal_payment_methods(request: HttpRequest, token: str) -> HttpResponse:
    session = _session(token)
    if request.method == "POST":
        try:
            services.portal_method_add(
                session=session,
                token=request.POST.get("token", ""),
                nonce=request.POST.get("nonce", ""),
                now=timezone.now(),
            )
        except ApiError as exc:
            return _methods_page(request, session, status=exc.status_code, form_error=exc.message)
        return _see_other(request.path + "?added=1")
    return _methods_page(request, session, added=request.GET.get("added") == "1")


@require_POST
@page
def portal_payment_method_default(request: HttpRequest, token: str, payment_method_id: str) -> HttpResponse:
    session = _session(token)
    services.portal_method_set_default(session=session, payment_method_id=payment_method_id, now=timezone.now())
    return _see_other(request.path.rsplit("/", 2)[0])


@require_POST
@page
def portal_payment_method_remove(request: HttpRequest, token: str, payment_method_id: str) -> HttpResponse:
    session = _session(token)
    services.portal_method_remove(session=session, payment_method_id=payment_method_id, now=timezone.now())
    return _see_other(request.path.rsplit("/", 2)[0])
