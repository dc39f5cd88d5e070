from django.urls import path

from subscriptions import apis

urlpatterns = [
    path("subscriptions", apis.SubscriptionListCreateApi.as_view(), name="subscription-list"),
    path("subscriptions/<str:subscription_id>", apis.SubscriptionDetailApi.as_view(), name="subscription-detail"),
    path("subscriptions/<str:subscription_id>/cancel", apis.SubscriptionCancelApi.as_view()),
    path("subscriptions/<str:subscription_id>/reactivate", apis.SubscriptionReactivateApi.as_view()),
    path("subscriptions/<str:subscription_id>/change", apis.SubscriptionChangeApi.as_view()),
    path("subscriptions/<str:subscription_id>/upcoming-invoice", apis.UpcomingInvoiceApi.as_view()),
]
