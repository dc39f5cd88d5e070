from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from billing_site import health

api_v1 = [
    path("", include("customers.urls")),
    path("", include("metering.urls")),
    path("", include("catalog.urls")),
    path("", include("metering.push.urls")),
    path("", include("invoicing.urls")),
    path("", include("subscriptions.urls")),
    path("", include("payments.urls")),
    path("", include("portal.api_urls")),
    # after metering, whose events/billing-events must win over events/<id>
    path("", include("webhooks.urls")),
]

urlpatterns = [
    path("admin/dashboard/", include("payments.admin_urls")),
    path("admin/", admin.site.urls),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/v1/", include(api_v1)),
    # The end customer's pages: hosted invoices (/i/...) and the portal (/portal/...).
    path("", include("portal.urls")),
    # Inbound provider webhooks (signed by the provider, no API key).
    path("", include("webhooks.inbound_urls")),
]

handler400 = "billing_site.errors.handler400"
handler403 = "billing_site.errors.handler403"
handler404 = "billing_site.errors.handler404"
handler500 = "billing_site.errors.handler500"
