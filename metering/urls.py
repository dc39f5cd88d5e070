from django.urls import path

from metering import apis

urlpatterns = [
    path("meters", apis.MeterListCreateApi.as_view(), name="meter-list"),
    path("meters/<str:meter_id>", apis.MeterDetailApi.as_view(), name="meter-detail"),
    path("events", apis.EventIngestApi.as_view(), name="events-ingest"),
    path("events/billing-events", apis.BillingEventIngestApi.as_view(), name="billing-events-ingest"),
    path("usage", apis.UsageCancelApi.as_view(), name="usage-cancel"),
    path("exports/usage.csv", apis.UsageExportApi.as_view(), name="export-usage"),
    path("usage/<str:meter_id>", apis.UsageApi.as_view(), name="usage-detail"),
    path("usage/<str:meter_id>/check-threshold", apis.ThresholdCheckApi.as_view(), name="usage-check-threshold"),
    path("alerts", apis.AlertListCreateApi.as_view(), name="alert-list"),
    path("alerts/<str:alert_id>", apis.AlertDetailApi.as_view(), name="alert-detail"),
]
