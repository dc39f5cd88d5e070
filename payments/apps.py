from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    name = "payments"

    def ready(self) -> None:
        from payments import webhook_objects

        webhook_objects.register()
        # The provider's webhooks that settle payments, refunds, disputes, setups and methods
        # (webhooks.inbound stores and dispatches them; it may not import us).
        from payments.services import provider_events

        provider_events.register()
        # Invoicing cannot import payments (imports point down), so payments hooks into it here.
        from invoicing.hooks import hook_register, on_invoice_finalized, on_invoice_finalizing
        from payments.services.ledger import invoices_negative_total_credit
        from payments.services.schedule import schedule_first_attempt

        hook_register(on_invoice_finalized, invoices_negative_total_credit)
        # A new invoice with something due is collected by the next run of the collection job.
        hook_register(on_invoice_finalizing, schedule_first_attempt)

        # The invoice document lists the payments, refunds and credit notes of its invoice.
        from invoicing.documents.hooks import invoice_settlement_providers
        from payments.documents import invoice_settlement_read

        hook_register(invoice_settlement_providers, invoice_settlement_read)

        # Offboarding (customers receives it): the tenant's open invoices are collected or left open.
        from payments import control_plane

        control_plane.register()
