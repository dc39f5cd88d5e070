from django.urls import path

from invoicing import apis
from invoicing.documents import apis as document_apis

urlpatterns = [
    path("subscriptions", apis.SubscriptionListCreateApi.as_view(), name="subscription-list"),
    path("subscriptions/<str:subscription_id>", apis.SubscriptionDetailApi.as_view(), name="subscription-detail"),
    path("subscriptions/<str:subscription_id>/cancel", apis.SubscriptionCancelApi.as_view()),
    path("subscriptions/<str:subscription_id>/reactivate", apis.SubscriptionReactivateApi.as_view()),
    path("subscriptions/<str:subscription_id>/change", apis.SubscriptionChangeApi.as_view()),
    path("subscriptions/<str:subscription_id>/upcoming-invoice", apis.UpcomingInvoiceApi.as_view()),
    path("invoices", apis.InvoiceListApi.as_view(), name="invoice-list"),
    path("invoices/<str:invoice_id>", apis.InvoiceDetailApi.as_view(), name="invoice-detail"),
    path("invoices/<str:invoice_id>/finalize", apis.InvoiceFinalizeApi.as_view()),
    path("invoices/<str:invoice_id>/pdf", document_apis.InvoicePdfApi.as_view(), name="invoice-pdf"),
    path("invoices/<str:invoice_id>/void", apis.InvoiceVoidApi.as_view()),
    path("invoices/<str:invoice_id>/mark-uncollectible", apis.InvoiceMarkUncollectibleApi.as_view()),
    path("tax-rates", apis.TaxRateListCreateApi.as_view(), name="tax-rate-list"),
    path("tax-rates/<str:tax_rate_id>", apis.TaxRateDetailApi.as_view(), name="tax-rate-detail"),
]
