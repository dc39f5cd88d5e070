from django.urls import path

from portal import apis

urlpatterns = [
    path(
        "customers/<str:customer_id>/portal-sessions",
        apis.PortalSessionCreateApi.as_view(),
        name="customer-portal-sessions",
    ),
]
