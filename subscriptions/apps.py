from django.apps import AppConfig


class SubscriptionsConfig(AppConfig):
    name = "subscriptions"

    def ready(self) -> None:
        from subscriptions import alerts, control_plane, progressive_ingest, webhook_objects

        webhook_objects.register()
        # Onboarding with a tier, offboarding, activation: customers receives the events, we add our part.
        control_plane.register()
        # Usage alerts watch the customer's billing period; invoice-amount alerts price the upcoming invoice.
        alerts.register()
        # Progressive billing on ingestion: a batch enqueues the evaluation of its customers with thresholds.
        progressive_ingest.register()
