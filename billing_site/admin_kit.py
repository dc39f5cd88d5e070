"""What every app's admin shares: money and quantities formatted as the documents format them, actions that
ask for confirmation (and the input they need) before they call a service, and those actions as buttons on
an object's own page.

Admin holds no business rule: an action's `run` calls one service; whatever the service refuses is shown
as an admin message naming the row, never as a 500.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import unquote
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme

from billing_site.errors import ApiError, InvalidRequest
from billing_site.formatting import Formatter
from billing_site.money import currency_exponent, is_currency

logger = logging.getLogger(__name__)

__all__ = [
    "ChangePageActions",
    "FormattedFields",
    "MoneyField",
    "ReadOnlyInline",
    "admin_each",
    "confirm_action",
    "money_text",
    "quantity_text",
    "to_minor",
]

EMPTY = "-"


def _locale() -> str:
    return getattr(settings, "DOCUMENT_LOCALE", "en") or "en"


@lru_cache(maxsize=64)
def _formatter(locale: str, currency: str) -> Formatter:
    return Formatter(locale=locale, currency=currency)


def money_text(amount: int | Decimal | None, currency: str | None) -> str:
    """An amount in minor units as a reader writes it: (2020, "usd") -> "$20.20". Fractions of a minor unit
    (unit prices) keep every digit: (Decimal("0.04"), "usd") -> "$0.0004"."""
    if amount is None or not currency or not is_currency(currency):
        return EMPTY if amount is None else str(amount)
    fmt = _formatter(_locale(), currency.upper())
    if isinstance(amount, int) and not isinstance(amount, bool):
        return fmt.money(amount)
    return fmt.unit_price(Decimal(amount))


def quantity_text(value: Decimal | int | None) -> str:
    """A quantity without trailing zeros: Decimal("1200.000000000000") -> "1,200"."""
    if value is None:
        return EMPTY
    return _formatter(_locale(), "USD").quantity(value)


def _resolve(obj: Any, path: str) -> Any:
    for part in path.replace("__", ".").split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


class FormattedFields:
    """Mixin for a ModelAdmin or an inline: `money_fields` (minor units, in the currency at
    `money_currency`, a dotted path from the row) and `quantity_fields` are shown formatted wherever they are
    read-only: list columns, change pages and inlines. Write the raw field names in `list_display`,
    `fields`, `fieldsets` and `readonly_fields`; the mixin swaps in the formatted columns."""

    money_fields: tuple[str, ...] = ()
    money_currency: str = "currency"
    quantity_fields: tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in cls.money_fields:
            setattr(cls, _shown(name), _money_column(name, cls.money_currency))
        for name in cls.quantity_fields:
            setattr(cls, _shown(name), _quantity_column(name))

    def _formatted(self) -> set[str]:
        return {*self.money_fields, *self.quantity_fields}

    def _swap(self, names: Iterable[Any], readonly: set[str] | None = None) -> list[Any]:
        formatted = self._formatted()
        out: list[Any] = []
        for name in names:
            if isinstance(name, (list, tuple)):
                out.append(tuple(self._swap(name, readonly)))
            elif isinstance(name, str) and name in formatted and (readonly is None or name in readonly):
                out.append(_shown(name))
            else:
                out.append(name)
        return out

    def get_list_display(self, request: HttpRequest) -> Any:
        return self._swap(super().get_list_display(request))  # type: ignore[misc]

    def raw_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[Any]:
        """The read-only fields by their model names: override this, not `get_readonly_fields`."""
        return list(super().get_readonly_fields(request, obj))  # type: ignore[misc]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        names = self.raw_readonly_fields(request, obj)
        shown = [_shown(n) for n in names if isinstance(n, str) and n in self._formatted()]
        return [*names, *[s for s in shown if s not in names]]

    def _readonly_set(self, request: HttpRequest, obj: Any) -> set[str]:
        return {n for n in self.raw_readonly_fields(request, obj) if isinstance(n, str)}

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = super().get_fields(request, obj)  # type: ignore[misc]
        fields = [f for f in fields if not (isinstance(f, str) and f.endswith("__shown"))]
        return _dedupe(self._swap(fields, self._readonly_set(request, obj)))

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        if not getattr(self, "fieldsets", None):
            return super().get_fieldsets(request, obj)  # type: ignore[misc]
        readonly = self._readonly_set(request, obj)
        return [
            (title, {**options, "fields": self._swap(options["fields"], readonly)})
            for title, options in super().get_fieldsets(request, obj)  # type: ignore[misc]
        ]


def _dedupe(names: list[Any]) -> list[Any]:
    seen: set[Any] = set()
    return [n for n in names if not (n in seen or seen.add(n))]


def _shown(name: str) -> str:
    return f"{name}__shown"


def _money_column(name: str, currency_path: str) -> Callable[..., str]:
    def column(self: Any, obj: Any) -> str:
        return money_text(getattr(obj, name), _resolve(obj, currency_path))

    return admin.display(description=name.replace("_", " "), ordering=name)(column)


def _quantity_column(name: str) -> Callable[..., str]:
    def column(self: Any, obj: Any) -> str:
        return quantity_text(getattr(obj, name))

    return admin.display(description=name.replace("_", " "), ordering=name)(column)


class ReadOnlyInline(FormattedFields, admin.TabularInline):
    """An inline that lists rows and links to them; rows change only through their own page's actions."""

    extra = 0
    can_delete = False
    show_change_link = True
    max_num = 0

    def raw_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[Any]:
        return list(self.fields or ())

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# --- Input ---------------------------------------------------------------------------------------------


class MoneyField(forms.CharField):
    """An amount typed in major units ("12.50"); `cleaned_data` keeps the Decimal. Turn it into minor
    units for a row's currency with `to_minor(value, currency)`, which refuses more decimals than
    the currency has (so "0.001" USD is a message, not a rounding)."""

    def __init__(self, *, allow_negative: bool = False, **kwargs: Any) -> None:
        kwargs.setdefault("help_text", "In the currency's major unit, e.g. 12.50")
        super().__init__(**kwargs)
        self.allow_negative = allow_negative

    def clean(self, value: Any) -> Decimal | None:
        text = super().clean(value)
        if text in (None, ""):
            return None
        text = str(text).strip()
        if "," in text:
            # "12,50" is 12.50 in some locales and 1250 in others: refuse it rather than guess.
            raise forms.ValidationError("Write the amount with a dot for decimals and no separators, e.g. 1250.50.")
        try:
            amount = Decimal(text)
        except InvalidOperation:
            raise forms.ValidationError(f"{text!r} is not an amount: give a number such as 12.50.") from None
        if not amount.is_finite():
            raise forms.ValidationError("Give a finite amount.")
        if amount == 0 or (amount < 0 and not self.allow_negative):
            raise forms.ValidationError(
                "Give a non-zero amount." if self.allow_negative else "Give an amount greater than zero."
            )
        return amount


def to_minor(value: Decimal, currency: str, *, param: str = "amount") -> int:
    """Major units -> integer minor units of `currency`; more decimals than the currency has is refused."""
    exponent = currency_exponent(currency)
    scaled = value.scaleb(exponent)
    if scaled != scaled.to_integral_value():
        raise InvalidRequest(f"{value} has more decimals than {currency.upper()} has ({exponent}).", param=param)
    return int(scaled)


# --- Actions -------------------------------------------------------------------------------------------


def admin_each(
    request: HttpRequest, queryset: Any, fn: Callable[[Any, Any], Any], label: str, *, now: datetime | None = None
) -> int:
    """Run an admin action's service call on each selected row and report per row: one refusal must not
    hide the others, and a refusal names the row it was about. Returns how many succeeded."""
    done, now = 0, now or timezone.now()
    for obj in queryset:
        try:
            result = fn(obj, now)
            done += 1
            if isinstance(result, str) and result:
                messages.info(request, f"{obj.pk}: {result}")
        except ApiError as exc:
            messages.error(request, f"{obj.pk}: {exc.message}")
        except Exception as exc:
            logger.exception("admin action %s failed on %s", label, obj.pk)
            messages.error(request, f"{obj.pk}: {type(exc).__name__}: {exc}")
    if done:
        messages.success(request, f"{label}: {done}.")
    return done


CONFIRM_TEMPLATE = "admin/billing_site/confirm_action.html"


def confirm_action(
    *,
    description: str,
    label: str,
    run: Callable[..., Any],
    form: type[forms.Form] | None = None,
    explanation: str = "",
    danger: bool = False,
) -> Callable[[Any, HttpRequest, Any], HttpResponse | None]:
    """An admin action that first shows a confirmation page listing the selected rows (with `form`'s fields
    when the action needs input), then calls `run(obj, now=..., **form.cleaned_data)` on each row.

    `run` calls one service; what it returns, when a string, is shown as an info message for the row.
    Invalid input re-renders the page with the field's error; a refusal from the service becomes an error
    message. Started from an object's page (`ChangePageActions`), it returns to that page."""

    def action(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: Any) -> HttpResponse | None:
        bound = None
        if request.POST.get("_confirm") == "yes":
            bound = form(request.POST) if form is not None else None
            if bound is None or bound.is_valid():
                data = bound.cleaned_data if bound is not None else {}
                admin_each(request, queryset, lambda obj, now: run(obj, now=now, **data), label)
                return _back(request)
            messages.error(request, "Please correct the errors below.")
        elif form is not None:
            bound = form()
        opts = modeladmin.model._meta
        context = {
            **modeladmin.admin_site.each_context(request),
            "title": f"{description}: are you sure?",
            "subtitle": None,
            "opts": opts,
            "app_label": opts.app_label,
            "description": description,
            "explanation": explanation,
            "danger": danger,
            "objects": list(queryset),
            "form": bound,
            "action_name": request.POST.get("action", ""),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "return_to": _return_to(request),
            "media": modeladmin.media + (bound.media if bound is not None else forms.Media()),
        }
        return TemplateResponse(request, CONFIRM_TEMPLATE, context)

    action.__name__ = "confirm_action"
    return admin.action(description=description)(action)


def _return_to(request: HttpRequest) -> str:
    target = request.POST.get("_return", "")
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return target
    return ""


def _back(request: HttpRequest) -> HttpResponse | None:
    target = _return_to(request)
    return HttpResponseRedirect(target) if target else None  # None: Django returns to the list


class ChangePageActions:
    """Mixin for a ModelAdmin: its actions also appear as buttons on each object's page (they post to the
    list's action handler with that one object selected, so they run exactly as from the list)."""

    change_form_template = "admin/billing_site/change_form.html"

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None) -> Any:
        actions = [
            (name, description)
            for name, (_fn, _name, description) in self.get_actions(request).items()  # type: ignore[attr-defined]
            if name != "delete_selected"
        ]
        extra = {**(extra_context or {}), "object_actions": actions, "object_actions_pk": unquote(object_id)}
        return super().change_view(request, object_id, form_url, extra_context=extra)  # type: ignore[misc]
