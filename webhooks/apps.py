from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "webhooks"

    def ready(self) -> None:
        from webhooks.models import WebhookEndpoint
        from webhooks.rendering import queryset_renderer, renderer_register
        from webhooks.serializers import EndpointOutput

        # Soft-deleted endpoints still render (their `webhook_endpoint.deleted` event shows them).
        renderer_register(
            "webhook_endpoint", queryset_renderer(WebhookEndpoint.objects.all, lambda e: EndpointOutput(e).data)
        )
