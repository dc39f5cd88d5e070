"""Hooks other apps register to act on invoices inside the transaction that changes them.

Invoicing sits below payments and must not import it, so payments registers what it needs here from its
`AppConfig.ready()` (for example: a finalized invoice whose total is negative credits the customer's
balance). A hook runs inside the finalizing transaction: if it raises, the finalization rolls back with
it, so nothing is finalized without its consequences.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from invoicing.models import Invoice

InvoicesHook = Callable[[list["Invoice"], datetime], None]

# Called with the invoices being finalized (numbered, open or paid) before they are saved: a hook sets
# fields of the invoices themselves in memory, so they are written with the invoice (no UPDATE after it).
on_invoice_finalizing: list[InvoicesHook] = []
# Called with the invoices just finalized (saved, numbered, open or paid) and the finalization's `now`.
on_invoice_finalized: list[InvoicesHook] = []


def hook_register(hooks: list[InvoicesHook], hook: InvoicesHook) -> None:
    """Add `hook` once (a second `ready()`, as in some test runners, must not register it twice)."""
    if hook not in hooks:
        hooks.append(hook)


def invoice_finalizing_hooks_run(invoices: list[Invoice], now: datetime) -> None:
    if not invoices:
        return
    for hook in list(on_invoice_finalizing):
        hook(invoices, now)


def invoice_finalized_hooks_run(invoices: list[Invoice], now: datetime) -> None:
    if not invoices:
        return
    for hook in list(on_invoice_finalized):
        hook(invoices, now)


# The invoice's hosted page (`hosted_invoice_url` on the API object): the portal app registers the one
# provider from its `ready()`. None when no provider is registered or the invoice has no live link.
HostedUrlProvider = Callable[["Invoice"], "str | None"]
hosted_invoice_url_providers: list[HostedUrlProvider] = []
# Prefetches (django.db.models.Prefetch) invoice reads add so the provider needs no query per invoice.
invoice_read_prefetches: list[Any] = []


def hosted_invoice_url(invoice: Invoice) -> str | None:
    for provider in hosted_invoice_url_providers:
        url = provider(invoice)
        if url:
            return url
    return None
