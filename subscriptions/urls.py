from django.urls import path

from subscriptions import apis

urlpatterns = [
    path("subscriptions", apis.SubscriptionListCreateApi.as_view(), name="subscription-list"),
    path("subscriptions/<str:subscription_id>", apis.SubscriptionDetailApi.as_view(), name="subscription-detail"),
    path("subscriptions/<str:subscription_id>/cancel", apis.SubscriptionCancelApi.as_view()),
    path("subscriptions/<str:subscription_id>/reactivate", apis.SubscriptionReactivateApi.as_view()),
    path("subscriptions/<str:subscription_id>/change", apis.SubscriptionChangeApi.as_view()),
    path("subscriptions/<str:subscription_id>/upcoming-invoice", apis.UpcomingInvoiceApi.as_view()),
    path("prices/<str:price_id>/migrate", apis.PriceMigrateApi.as_view()),
    # the control plane's tier -> plan table
    path("tiers", apis.TierListCreateApi.as_view(), name="tier-list"),
    path("tiers/<str:tier_id>", apis.TierDetailApi.as_view(), name="tier-detail"),
    path(
        "customers/<str:customer_id>/entitlements",
        apis.CustomerEntitlementsApi.as_view(),
        name="customer-entitlements",
    ),
]
