from django.apps import AppConfig


class BillingSiteConfig(AppConfig):
    name = "billing_site"
    verbose_name = "Core (API keys, idempotency)"

    def ready(self) -> None:
        from billing_site import auth, schema  # noqa: F401 - auth: key-change signals; schema: the OpenAPI extension
