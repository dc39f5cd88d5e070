from django.apps import AppConfig


class CustomersConfig(AppConfig):
    name = "customers"

    def ready(self) -> None:
        from customers import provider_events, webhook_objects

        webhook_objects.register()
        provider_events.register()
