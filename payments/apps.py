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
        from invoicing.hooks import hook_register, on_invoice_finalized
        from payments.services.ledger import invoices_negative_total_credit
        from payments.services.schedule import schedule_first_attempt

        hook_register(on_invoice_finalized, invoices_negative_total_credit)
        # A new invoice with something due is collected by the next run of the collection job.
        hook_register(on_invoice_finalized, schedule_first_attempt)
