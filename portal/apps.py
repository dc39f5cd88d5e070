from django.apps import AppConfig


class PortalConfig(AppConfig):
    name = "portal"

    def ready(self) -> None:
        # Invoicing cannot import us (imports point down): every finalized invoice gets its hosted link in
        # the finalizing transaction, and the invoice API object shows its URL.
        from django.db.models import Prefetch

        from invoicing import hooks
        from portal.links import hosted_invoice_links_create, hosted_url_of
        from portal.models import HostedInvoiceLink

        hooks.hook_register(hooks.on_invoice_finalized, hosted_invoice_links_create)
        hooks.hook_register(hooks.hosted_invoice_url_providers, hosted_url_of)
        if not hooks.invoice_read_prefetches:
            hooks.invoice_read_prefetches.append(
                Prefetch(
                    "hosted_links",
                    queryset=HostedInvoiceLink.objects.filter(revoked_at__isnull=True),
                    to_attr="live_hosted_links",
                )
            )
