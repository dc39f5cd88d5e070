"""The end customer's pages (mounted at the site root, outside /api/)."""

from django.urls import path

from portal import views

app_name = "portal"

urlpatterns = [
    path("i/<str:token>", views.hosted_invoice, name="hosted-invoice"),
    path("i/<str:token>/pdf", views.hosted_invoice_pdf, name="hosted-invoice-pdf"),
    path("i/<str:token>/pay", views.hosted_invoice_pay, name="hosted-invoice-pay"),
    path("i/<str:token>/return", views.hosted_invoice_return, name="hosted-invoice-return"),
    path(
        "i/<str:token>/authenticate/<str:payment_intent_id>",
        views.hosted_invoice_authenticate,
        name="hosted-invoice-authenticate",
    ),
    path("portal/<str:token>/", views.portal_overview, name="overview"),
    path("portal/<str:token>/invoices", views.portal_invoices, name="invoices"),
    path("portal/<str:token>/invoices/<str:invoice_id>/pdf", views.portal_invoice_pdf, name="invoice-pdf"),
    path("portal/<str:token>/payment-methods", views.portal_payment_methods, name="payment-methods"),
    path(
        "portal/<str:token>/payment-methods/<str:payment_method_id>/default",
        views.portal_payment_method_default,
        name="payment-method-default",
    ),
    path(
        "portal/<str:token>/payment-methods/<str:payment_method_id>/remove",
        views.portal_payment_method_remove,
        name="payment-method-remove",
    ),
]
