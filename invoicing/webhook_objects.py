"""How webhooks render this app's objects: with the API's own Output serializers (see webhooks.rendering)."""

from __future__ import annotations

from django.db.models import Prefetch

from webhooks.rendering import queryset_renderer, renderer_register


def register() -> None:
    from invoicing.models import Invoice, InvoiceLine, TaxRate
    from invoicing.serializers import InvoiceOutput, TaxRateOutput, invoice_data

    renderer_register(
        "invoice",
        queryset_renderer(
            lambda: Invoice.objects.prefetch_related(
                Prefetch("lines", queryset=InvoiceLine.objects.order_by("position"))
            ),
            lambda invoice: InvoiceOutput(invoice_data(invoice)).data,
        ),
    )
    renderer_register("tax_rate", queryset_renderer(TaxRate.objects.all, lambda r: TaxRateOutput(r).data))
