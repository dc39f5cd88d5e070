from django.urls import path

from webhooks import apis

# Under /api/v1/. `GET /events` itself is served by metering's view of that path (it subclasses
# EventListApi), because `POST /events` is usage ingestion.
urlpatterns = [
    path("webhook-endpoints", apis.EndpointListCreateApi.as_view(), name="webhook-endpoint-list"),
    path("webhook-endpoints/<str:endpoint_id>", apis.EndpointDetailApi.as_view(), name="webhook-endpoint-detail"),
    path(
        "webhook-endpoints/<str:endpoint_id>/rotate-secret",
        apis.EndpointRotateSecretApi.as_view(),
        name="webhook-endpoint-rotate-secret",
    ),
    path("webhook-endpoints/<str:endpoint_id>/test", apis.EndpointTestApi.as_view(), name="webhook-endpoint-test"),
    path(
        "webhook-endpoints/<str:endpoint_id>/resend", apis.EndpointResendApi.as_view(), name="webhook-endpoint-resend"
    ),
    path(
        "webhook-endpoints/<str:endpoint_id>/deliveries",
        apis.EndpointDeliveryListApi.as_view(),
        name="webhook-endpoint-deliveries",
    ),
    path("webhook-deliveries/<str:delivery_id>", apis.DeliveryDetailApi.as_view(), name="webhook-delivery-detail"),
    path(
        "webhook-deliveries/<str:delivery_id>/redeliver",
        apis.DeliveryRedeliverApi.as_view(),
        name="webhook-delivery-redeliver",
    ),
    path("events/<str:event_id>", apis.EventDetailApi.as_view(), name="billing-event-detail"),
]
