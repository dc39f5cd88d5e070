from django.urls import path

from webhooks import apis

# At the site root: providers post to /billing/<provider> (the seeds' path), outside /api/v1.
urlpatterns = [
    path("billing/<str:provider>", apis.provider_webhook, name="provider-webhook"),
]
