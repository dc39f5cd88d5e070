"""The sandbox processor (the default): no network, deterministic outcomes by token, after Stripe's test
tokens. Its state lives in the database (`SandboxPayment`), so another process or job sees it, a repeated
call with the same idempotency key returns the first result without acting again, and tests can count
charges exactly.

| token                        | card            | a payment or a setup                              |
|------------------------------|-----------------|---------------------------------------------------|
| `tok_visa`                   | visa 4242       | succeeds                                          |
| `tok_mastercard`             | mastercard 4444 | succeeds                                          |
| `tok_chargeDeclined`         | visa 0002       | declined: card_declined (generic_decline)          |
| `tok_insufficientFunds`      | visa 9995       | declined: card_declined (insufficient_funds)       |
| `tok_authenticationRequired` | visa 3184       | requires_action                                   |
| `tok_timeout`                | visa 0341       | happens, then ProcessorTimeout (the answer is lost) |

A method's ref encodes its token (`tok_visa` -> `pm_sandbox_visa`); `pm_card_visa` is accepted too.
Every card attaches; declines happen when money is asked for (or a setup verifies the card).
`complete_action` plays the customer finishing (or failing) authentication.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction

from payments.models import SandboxPayment
from payments.processors.base import (
    ProcessorError,
    ProcessorTimeout,
    ProviderMethod,
    ProviderPayment,
    ProviderRefund,
    ProviderSetup,
)

Kind = SandboxPayment.Kind


@dataclass(frozen=True)
class Card:
    brand: str
    last4: str
    outcome: str  # succeed | decline | action | timeout
    decline_code: str = ""
    message: str = ""


CARDS: dict[str, Card] = {
    "visa": Card("visa", "4242", "succeed"),
    "mastercard": Card("mastercard", "4444", "succeed"),
    "chargeDeclined": Card("visa", "0002", "decline", "generic_decline", "Your card was declined."),
    "insufficientFunds": Card("visa", "9995", "decline", "insufficient_funds", "Your card has insufficient funds."),
    "authenticationRequired": Card("visa", "3184", "action"),
    "timeout": Card("visa", "0341", "timeout"),
}
_PREFIXES = ("tok_", "pm_sandbox_", "pm_card_")
EXP_MONTH, EXP_YEAR = 12, 2034


def card_name(token: str) -> str:
    """`tok_visa`, `pm_sandbox_visa` and `pm_card_visa` all name the card `visa`."""
    for prefix in _PREFIXES:
        if token.startswith(prefix) and token[len(prefix) :] in CARDS:
            return token[len(prefix) :]
    raise ProcessorError("resource_missing", f"No such token or payment method: '{token[:60]}'")


def method_ref(name: str) -> str:
    return f"pm_sandbox_{name}"


def _ref(prefix: str) -> str:
    return f"{prefix}_sandbox_{secrets.token_hex(10)}"


def _method(name: str) -> ProviderMethod:
    card = CARDS[name]
    return ProviderMethod(
        ref=method_ref(name), brand=card.brand, last4=card.last4, exp_month=EXP_MONTH, exp_year=EXP_YEAR
    )


def client_secret(row: SandboxPayment) -> str:
    """Stripe's shape (`<id>_secret_<random>`), derived from the row so every read gives the same one."""
    return f"{row.ref}_secret_{hashlib.sha256(row.idempotency_key.encode()).hexdigest()[:24]}"


def _payment(row: SandboxPayment) -> ProviderPayment:
    return ProviderPayment(
        ref=row.ref,
        status=row.status,
        amount=row.amount,
        amount_received=row.amount_received,
        amount_capturable=row.amount_capturable,
        error_code=row.error_code or None,
        error_message=row.error_message or None,
        decline_code=row.decline_code or None,
        client_secret=client_secret(row),
        # The customer completes the sandbox's challenge (the hosted invoice page shows it; tests call
        # `complete_action`), then the payment is confirmed again, which reads the outcome back.
        next_action={"type": "sandbox_authenticate"} if row.status == "requires_action" else None,
    )


def _setup(row: SandboxPayment) -> ProviderSetup:
    return ProviderSetup(
        ref=row.ref,
        status=row.status,
        method=_method(row.card) if row.status == "succeeded" else None,
        error_code=row.error_code or None,
        error_message=row.error_message or None,
    )


def _raise_if_failed(row: SandboxPayment) -> None:
    if row.status == "failed":
        raise ProcessorError(row.error_code, row.error_message, decline_code=row.decline_code or None)


def _record(**fields: Any) -> tuple[SandboxPayment, bool]:
    """Insert the row for an idempotency key, or return the one a concurrent or earlier call inserted."""
    try:
        with transaction.atomic():
            return SandboxPayment.objects.create(**fields), True
    except IntegrityError:
        return SandboxPayment.objects.get(idempotency_key=fields["idempotency_key"]), False


def _same_request(row: SandboxPayment, kind: str, amount: int) -> None:
    if row.kind != kind or row.amount != amount:
        raise ProcessorError(
            "idempotency_key_in_use",
            "Keys for idempotent requests can only be used with the same parameters they were first used with.",
        )


class SandboxProcessor:
    name = "sandbox"

    # --- customers and methods -------------------------------------------------------------------

    def create_customer(self, *, customer_id: str, email: str, name: str, idempotency_key: str) -> str:
        return f"cus_sandbox_{customer_id.removeprefix('cus_')}"

    def attach_method(self, *, provider_customer: str, token: str, idempotency_key: str) -> ProviderMethod:
        return _method(card_name(token))

    def detach_method(self, *, method_ref: str, idempotency_key: str) -> None:
        card_name(method_ref)

    def setup(
        self, *, provider_customer: str, token: str, idempotency_key: str, usage: str = "off_session"
    ) -> ProviderSetup:
        row = SandboxPayment.objects.filter(idempotency_key=idempotency_key).first()
        if row is None:
            name = card_name(token)
            card = CARDS[name]
            status = {"decline": "failed", "action": "requires_action"}.get(card.outcome, "succeeded")
            row, created = _record(
                ref=_ref("seti"),
                idempotency_key=idempotency_key,
                kind=Kind.SETUP,
                card=name,
                customer_ref=provider_customer,
                status=status,
                **self._error_fields(card),
            )
            if created and card.outcome == "timeout":
                raise ProcessorTimeout(f"sandbox: no answer for setup {idempotency_key}")
        _same_request(row, Kind.SETUP, 0)
        _raise_if_failed(row)
        return _setup(row)

    def fetch_setup(self, *, setup_ref: str) -> ProviderSetup:
        row = SandboxPayment.objects.filter(ref=setup_ref, kind=Kind.SETUP).first()
        if row is None:
            raise ProcessorError("resource_missing", f"No such setup: '{setup_ref}'")
        return _setup(row)

    # --- payments --------------------------------------------------------------------------------

    def authorize(self, **kwargs: Any) -> ProviderPayment:
        return self._pay(capture_method="manual", **kwargs)

    def charge(self, **kwargs: Any) -> ProviderPayment:
        return self._pay(capture_method="automatic", **kwargs)

    def _pay(
        self,
        *,
        provider_customer: str,
        method_ref: str,
        amount: int,
        currency: str,
        idempotency_key: str,
        capture_method: str,
        description: str = "",
        off_session: bool = False,
    ) -> ProviderPayment:
        row = SandboxPayment.objects.filter(idempotency_key=idempotency_key).first()
        if row is None:
            name = card_name(method_ref)
            card = CARDS[name]
            fields: dict[str, Any] = {"status": "requires_action"}
            if card.outcome == "decline":
                fields = {"status": "failed", **self._error_fields(card)}
            elif card.outcome in ("succeed", "timeout"):
                fields = self._money_fields(capture_method, amount)
            row, created = _record(
                ref=_ref("pi"),
                idempotency_key=idempotency_key,
                kind=Kind.PAYMENT,
                card=name,
                customer_ref=provider_customer,
                amount=amount,
                currency=currency,
                capture_method=capture_method,
                **fields,
            )
            if created and card.outcome == "timeout":
                # The charge happened; the answer is lost on the way back.
                raise ProcessorTimeout(f"sandbox: no answer for payment {idempotency_key}")
        _same_request(row, Kind.PAYMENT, amount)
        _raise_if_failed(row)
        return _payment(row)

    @staticmethod
    def _money_fields(capture_method: str, amount: int) -> dict[str, Any]:
        if capture_method == "manual":
            return {"status": "requires_capture", "amount_capturable": amount}
        return {"status": "succeeded", "amount_received": amount}

    @staticmethod
    def _error_fields(card: Card) -> dict[str, Any]:
        if card.outcome != "decline":
            return {}
        return {"error_code": "card_declined", "decline_code": card.decline_code, "error_message": card.message}

    def _locked(self, payment_ref: str) -> SandboxPayment:
        row = SandboxPayment.objects.select_for_update().filter(ref=payment_ref, kind=Kind.PAYMENT).first()
        if row is None:
            raise ProcessorError("resource_missing", f"No such payment: '{payment_ref}'")
        return row

    def capture(self, *, payment_ref: str, amount: int, idempotency_key: str, currency: str = "") -> ProviderPayment:
        with transaction.atomic():
            row = self._locked(payment_ref)
            if row.status == "succeeded":  # captured already (a retry): the first result
                return _payment(row)
            if row.status != "requires_capture":
                raise ProcessorError("payment_intent_unexpected_state", f"The payment is {row.status}.")
            if not 0 < amount <= row.amount_capturable:
                raise ProcessorError("amount_too_large", f"At most {row.amount_capturable} can be captured.")
            row.status, row.amount_received, row.amount_capturable = "succeeded", amount, 0
            row.save(update_fields=["status", "amount_received", "amount_capturable", "updated_at"])
        return _payment(row)

    def cancel(self, *, payment_ref: str, idempotency_key: str, reason: str = "") -> ProviderPayment:
        with transaction.atomic():
            row = self._locked(payment_ref)
            if row.status in ("requires_capture", "requires_action"):
                row.status, row.amount_capturable = "canceled", 0
                row.save(update_fields=["status", "amount_capturable", "updated_at"])
            elif row.status != "canceled":
                raise ProcessorError("payment_intent_unexpected_state", f"A {row.status} payment cannot be canceled.")
        return _payment(row)

    def refund(
        self, *, payment_ref: str, amount: int, reason: str, idempotency_key: str, currency: str = ""
    ) -> ProviderRefund:
        row = SandboxPayment.objects.filter(idempotency_key=idempotency_key).first()
        if row is None:
            try:
                with transaction.atomic():
                    payment = self._locked(payment_ref)
                    left = payment.amount_received - payment.amount_refunded
                    if payment.status != "succeeded" or not 0 < amount <= left:
                        raise ProcessorError("amount_too_large", f"At most {max(left, 0)} can be refunded.")
                    row = SandboxPayment.objects.create(
                        ref=_ref("re"),
                        idempotency_key=idempotency_key,
                        kind=Kind.REFUND,
                        card=payment.card,
                        customer_ref=payment.customer_ref,
                        payment_ref=payment.ref,
                        amount=amount,
                        currency=payment.currency,
                        status="succeeded",
                    )
                    payment.amount_refunded += amount
                    payment.save(update_fields=["amount_refunded", "updated_at"])
            except IntegrityError:  # the same key, concurrently: its first result
                row = SandboxPayment.objects.get(idempotency_key=idempotency_key)
        _same_request(row, Kind.REFUND, amount)
        return ProviderRefund(ref=row.ref, status=row.status, amount=row.amount)

    def fetch_payment(self, *, idempotency_key: str, payment_ref: str = "") -> ProviderPayment | None:
        rows = SandboxPayment.objects.filter(kind=Kind.PAYMENT)
        row = rows.filter(ref=payment_ref).first() if payment_ref else None
        row = row or rows.filter(idempotency_key=idempotency_key).first()
        return _payment(row) if row is not None else None

    # --- the customer's side (tests, demos) ------------------------------------------------------

    def complete_action(self, ref: str, *, succeed: bool = True) -> None:
        """The customer finishes (or fails) the authentication a payment or setup asked for."""
        with transaction.atomic():
            row = SandboxPayment.objects.select_for_update().get(ref=ref, status="requires_action")
            if not succeed:
                row.status, row.error_code = "failed", "payment_intent_authentication_failure"
                row.error_message = "The customer did not complete authentication."
            elif row.kind == Kind.SETUP:
                row.status = "succeeded"
            else:
                for field, value in self._money_fields(row.capture_method, row.amount).items():
                    setattr(row, field, value)
            row.save()


def sandbox_charges() -> int:
    """Payments the sandbox made that moved (or reserved) money: what tests count."""
    return SandboxPayment.objects.filter(kind=Kind.PAYMENT, status__in=("succeeded", "requires_capture")).count()
