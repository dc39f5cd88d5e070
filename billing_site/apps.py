from django.apps import AppConfig


class BillingSiteConfig(AppConfig):
    name = "billing_site"
    verbose_name = "Core (API keys, idempotency)"

    def ready(self) -> None:
        from billing_site import schema  # noqa: F401 - registers the OpenAPI authentication extension
