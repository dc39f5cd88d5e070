from django.urls import path

from payments import apis_collection as collection
from payments import apis_documents as documents
from payments import apis_intents as intents
from payments import apis_ledger as ledger

intent_patterns = [
    path("payment-methods", intents.PaymentMethodListCreateApi.as_view(), name="payment-method-list"),
    path(
        "payment-methods/<str:payment_method_id>",
        intents.PaymentMethodDetailApi.as_view(),
        name="payment-method-detail",
    ),
    path("payment-methods/<str:payment_method_id>/detach", intents.PaymentMethodDetachApi.as_view()),
    path("setup-intents", intents.SetupIntentCreateApi.as_view(), name="setup-intent-list"),
    path("setup-intents/<str:setup_intent_id>", intents.SetupIntentDetailApi.as_view(), name="setup-intent-detail"),
    path("setup-intents/<str:setup_intent_id>/confirm", intents.SetupIntentConfirmApi.as_view()),
    path("setup-intents/<str:setup_intent_id>/cancel", intents.SetupIntentCancelApi.as_view()),
    path("payment-intents", intents.PaymentIntentListCreateApi.as_view(), name="payment-intent-list"),
    path(
        "payment-intents/<str:payment_intent_id>",
        intents.PaymentIntentDetailApi.as_view(),
        name="payment-intent-detail",
    ),
    path("payment-intents/<str:payment_intent_id>/confirm", intents.PaymentIntentConfirmApi.as_view()),
    path("payment-intents/<str:payment_intent_id>/capture", intents.PaymentIntentCaptureApi.as_view()),
    path("payment-intents/<str:payment_intent_id>/cancel", intents.PaymentIntentCancelApi.as_view()),
    path("refunds", intents.RefundListCreateApi.as_view(), name="refund-list"),
    path("refunds/<str:refund_id>", intents.RefundDetailApi.as_view(), name="refund-detail"),
]

ledger_patterns = [
    path("customers/<str:customer_id>/balance", ledger.CustomerBalanceApi.as_view(), name="customer-balance"),
    path(
        "customers/<str:customer_id>/balance-transactions",
        ledger.CustomerBalanceTransactionListCreateApi.as_view(),
        name="customer-balance-transactions",
    ),
    path("credit-grants", ledger.CreditGrantListCreateApi.as_view(), name="credit-grant-list"),
    path("credit-grants/<str:credit_grant_id>", ledger.CreditGrantDetailApi.as_view(), name="credit-grant-detail"),
    path("credit-grants/<str:credit_grant_id>/void", ledger.CreditGrantVoidApi.as_view()),
    path("credit-notes", ledger.CreditNoteListCreateApi.as_view(), name="credit-note-list"),
    path("credit-notes/<str:credit_note_id>", ledger.CreditNoteDetailApi.as_view(), name="credit-note-detail"),
    path("credit-notes/<str:credit_note_id>/void", ledger.CreditNoteVoidApi.as_view()),
]

collection_patterns = [
    path("invoices/<str:invoice_id>/pay", collection.InvoicePayApi.as_view(), name="invoice-pay"),
]

document_patterns = [
    path("credit-notes/<str:credit_note_id>/pdf", documents.CreditNotePdfApi.as_view(), name="credit-note-pdf"),
    path("invoices/<str:invoice_id>/receipt", documents.InvoiceReceiptApi.as_view(), name="invoice-receipt"),
]

urlpatterns = [*intent_patterns, *ledger_patterns, *collection_patterns, *document_patterns]
