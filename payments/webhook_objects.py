"""How webhooks render this app's objects: with the API's own Output serializers (see webhooks.rendering)."""

from __future__ import annotations

from webhooks.rendering import queryset_renderer, renderer_register


def register() -> None:
    from payments.models import (
        BalanceTransaction,
        CreditGrant,
        CreditNote,
        Dispute,
        PaymentIntent,
        PaymentMethod,
        Refund,
        SetupIntent,
    )
    from payments.selectors import with_burned
    from payments.serializers import (
        BalanceTransactionOutput,
        CreditGrantOutput,
        CreditNoteOutput,
        DisputeOutput,
        PaymentIntentOutput,
        PaymentMethodOutput,
        RefundOutput,
        SetupIntentOutput,
    )

    renderer_register(
        "payment_intent", queryset_renderer(PaymentIntent.objects.all, lambda i: PaymentIntentOutput(i).data)
    )
    renderer_register(
        "payment_method", queryset_renderer(PaymentMethod.objects.all, lambda m: PaymentMethodOutput(m).data)
    )
    renderer_register("setup_intent", queryset_renderer(SetupIntent.objects.all, lambda i: SetupIntentOutput(i).data))
    renderer_register("refund", queryset_renderer(Refund.objects.all, lambda r: RefundOutput(r).data))
    renderer_register(
        "credit_note",
        queryset_renderer(lambda: CreditNote.objects.prefetch_related("lines"), lambda n: CreditNoteOutput(n).data),
    )
    renderer_register(
        "credit_grant",
        queryset_renderer(lambda: with_burned(CreditGrant.objects.all()), lambda g: CreditGrantOutput(g).data),
    )
    renderer_register(
        "customer_balance_transaction",
        queryset_renderer(BalanceTransaction.objects.all, lambda t: BalanceTransactionOutput(t).data),
    )
    renderer_register("dispute", queryset_renderer(Dispute.objects.all, lambda d: DisputeOutput(d).data))
