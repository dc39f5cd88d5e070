from django.apps import AppConfig


class SubscriptionsConfig(AppConfig):
    name = "subscriptions"

    def ready(self) -> None:
        from subscriptions import control_plane, webhook_objects

        webhook_objects.register()
        # Onboarding with a tier, offboarding, activation: customers receives the events, we add our part.
        control_plane.register()
