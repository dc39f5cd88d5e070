from django.urls import path

from payments import apis

urlpatterns = [
    path("test-clocks/<str:clock_id>/advance", apis.TestClockAdvanceApi.as_view(), name="test-clock-advance"),
    path("payment-methods", apis.PaymentMethodListCreateApi.as_view(), name="payment-method-list"),
    path(
        "payment-methods/<str:payment_method_id>",
        apis.PaymentMethodDetailApi.as_view(),
        name="payment-method-detail",
    ),
    path("payment-methods/<str:payment_method_id>/detach", apis.PaymentMethodDetachApi.as_view()),
    path("setup-intents", apis.SetupIntentCreateApi.as_view(), name="setup-intent-list"),
    path("setup-intents/<str:setup_intent_id>", apis.SetupIntentDetailApi.as_view(), name="setup-intent-detail"),
    path("setup-intents/<str:setup_intent_id>/confirm", apis.SetupIntentConfirmApi.as_view()),
    path("setup-intents/<str:setup_intent_id>/cancel", apis.SetupIntentCancelApi.as_view()),
    path("payment-intents", apis.PaymentIntentListCreateApi.as_view(), name="payment-intent-list"),
    path(
        "payment-intents/<str:payment_intent_id>",
        apis.PaymentIntentDetailApi.as_view(),
        name="payment-intent-detail",
    ),
    path("payment-intents/<str:payment_intent_id>/confirm", apis.PaymentIntentConfirmApi.as_view()),
    path("payment-intents/<str:payment_intent_id>/capture", apis.PaymentIntentCaptureApi.as_view()),
    path("payment-intents/<str:payment_intent_id>/cancel", apis.PaymentIntentCancelApi.as_view()),
    path("refunds", apis.RefundListCreateApi.as_view(), name="refund-list"),
    path("refunds/<str:refund_id>", apis.RefundDetailApi.as_view(), name="refund-detail"),
    path("disputes", apis.DisputeListApi.as_view(), name="dispute-list"),
    path("disputes/<str:dispute_id>", apis.DisputeDetailApi.as_view(), name="dispute-detail"),
    path("customers/<str:customer_id>/balance", apis.CustomerBalanceApi.as_view(), name="customer-balance"),
    path(
        "customers/<str:customer_id>/balance-transactions",
        apis.CustomerBalanceTransactionListCreateApi.as_view(),
        name="customer-balance-transactions",
    ),
    path("credit-grants", apis.CreditGrantListCreateApi.as_view(), name="credit-grant-list"),
    path("credit-grants/<str:credit_grant_id>", apis.CreditGrantDetailApi.as_view(), name="credit-grant-detail"),
    path("credit-grants/<str:credit_grant_id>/void", apis.CreditGrantVoidApi.as_view()),
    path("credit-notes", apis.CreditNoteListCreateApi.as_view(), name="credit-note-list"),
    path("credit-notes/<str:credit_note_id>", apis.CreditNoteDetailApi.as_view(), name="credit-note-detail"),
    path("credit-notes/<str:credit_note_id>/void", apis.CreditNoteVoidApi.as_view()),
    path("invoices/<str:invoice_id>/pay", apis.InvoicePayApi.as_view(), name="invoice-pay"),
    path("credit-notes/<str:credit_note_id>/pdf", apis.CreditNotePdfApi.as_view(), name="credit-note-pdf"),
    path("invoices/<str:invoice_id>/receipt", apis.InvoiceReceiptApi.as_view(), name="invoice-receipt"),
]
