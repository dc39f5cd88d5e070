"""Plan migration: every live subscription on a price moves to a new price at its next renewal, or now with
prorations, as one operator action (API and admin); a dry run lists and writes nothing; re-running is a
no-op; a tenant cannot do it."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from customers.tests.factories import CustomerFactory
from invoicing.models import PendingInvoiceItem
from subscriptions.models import PriceMigration, SubscriptionItem, SubscriptionPriceMigration
from subscriptions.services.lifecycle import subscription_cancel
from subscriptions.services.preview import subscription_upcoming_invoice
from subscriptions.services.renewal import renew_subscriptions_job
from subscriptions.tests.support import T0, at, fixed_price, invoices_of, metered_price, subscribe, use
from webhooks.models import BillingEvent

pytestmark = pytest.mark.django_db
FEB28, MAR31 = at(2, 28), at(3, 31)


def _migrate(api, price, to_price, **body):
    return api.post(f"/api/v1/prices/{price.id}/migrate", {"to_price": to_price.id, **body}, format="json")


def _live_prices(sub):
    return sorted(i.price_id for i in sub.items.filter(removed_at__isnull=True))


def test_dry_run_lists_every_live_subscription_and_writes_nothing(api):
    old, new = fixed_price("1000"), fixed_price("1500")
    subs = [subscribe(None, old, quantity=Decimal(2))[0] for _ in range(2)]
    ended, _ = subscribe(None, old)
    subscription_cancel(subscription=ended, at_period_end=False, prorate=False, now=T0)
    events = BillingEvent.objects.count()
    response = _migrate(api, old, new, when="next_renewal", dry_run=True)
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["object"], body["id"], body["dry_run"]) == ("price_migration", None, True)
    assert body["when"] == "next_renewal"
    assert [(r["subscription"], r["quantity"], r["status"]) for r in body["subscriptions"]] == sorted(
        (s.id, "2", "would_schedule") for s in subs
    )
    assert {r["effective_at"] for r in body["subscriptions"]} == {"2026-02-28T12:00:00Z"}
    assert not PriceMigration.objects.exists() and not SubscriptionPriceMigration.objects.exists()
    assert BillingEvent.objects.count() == events
    assert all(_live_prices(s) == [old.id] for s in subs)


def test_next_renewal_bills_the_ended_period_on_the_old_price_and_the_next_on_the_new(api):
    customer = CustomerFactory()
    old, new = fixed_price("1000"), fixed_price("1500")
    calls_old, calls_new = metered_price(unit="1"), metered_price(unit="2")
    sub, _ = subscribe(customer, old, calls_old)
    use(customer, calls_old, 100, at(2, 10))
    assert _migrate(api, old, new).json()["subscriptions"][0]["status"] == "scheduled"
    assert _migrate(api, calls_old, calls_new).json()["subscriptions"][0]["status"] == "scheduled"
    # Idempotent: asked again, nothing more is scheduled and no migration row is made.
    again = _migrate(api, old, new).json()
    assert (again["id"], again["subscriptions"][0]["status"]) == (None, "already_scheduled")
    assert PriceMigration.objects.count() == 2
    # The preview already shows the move.
    preview = subscription_upcoming_invoice(subscription=sub, now=at(2, 20))
    assert [(line.kind, line.price_id, line.amount) for line in preview.lines] == [
        ("fixed", new.id, 1500),
        ("usage", calls_old.id, 100),
    ]
    renew_subscriptions_job(now=FEB28)
    invoice = invoices_of(sub)[-1]
    assert [(line.kind, line.price_id, line.amount) for line in invoice.lines.order_by("position")] == [
        ("fixed", new.id, 1500),  # in advance, Feb 28 - Mar 31, on the new price
        ("usage", calls_old.id, 100),  # in arrears, the ended period's usage on the old price
    ]
    sub.refresh_from_db()
    assert _live_prices(sub) == sorted([new.id, calls_new.id])
    assert set(SubscriptionPriceMigration.objects.values_list("status", flat=True)) == {"applied"}
    use(customer, calls_new, 10, at(3, 10))
    renew_subscriptions_job(now=MAR31)
    usage = invoices_of(sub)[-1].lines.get(kind="usage")
    assert (usage.price_id, usage.amount) == (calls_new.id, 20)
    # Nothing is left on the old price: migrating again finds nobody.
    assert _migrate(api, old, new).json()["subscriptions"] == []


def test_now_moves_through_the_change_path_with_prorations(api):
    old, new = fixed_price("3100"), fixed_price("6200")
    sub, _ = subscribe(None, old)
    renew_subscriptions_job(now=FEB28)
    response = _migrate(api, old, new, when="now")
    assert response.status_code == 200, response.content
    # The API's clock is the wall clock; prorations are measured on it, so only their shape is checked.
    assert response.json()["subscriptions"][0]["status"] == "migrated"
    sub.refresh_from_db()
    assert _live_prices(sub) == [new.id]
    migration = PriceMigration.objects.get()
    assert migration.entries.get().status == "applied"
    assert _migrate(api, old, new, when="now").json()["subscriptions"] == []


def test_now_at_a_known_instant_prorates_by_the_second():
    from subscriptions.services.migration import price_migrate

    old, new = fixed_price("3100"), fixed_price("6200")
    sub, _ = subscribe(None, old)
    renew_subscriptions_job(now=FEB28)  # Feb 28 12:00 - Mar 31 12:00, 31 days
    result = price_migrate(from_price=old, to_price=new, when="now", dry_run=False, now=at(3, 16))
    assert [row.status for row in result.rows] == ["migrated"]
    pending = sorted(PendingInvoiceItem.objects.filter(subscription=sub).values_list("amount", flat=True))
    assert pending == [-1500, 3000]  # 15 of 31 days left: credit the old price, charge the new


def test_a_subscription_that_already_has_the_new_price_is_skipped(api):
    old, new = fixed_price("1000"), fixed_price("1500")
    sub, _ = subscribe(None, old, new)
    row = _migrate(api, old, new).json()["subscriptions"][0]
    assert (row["subscription"], row["status"]) == (sub.id, "skipped")
    assert not SubscriptionPriceMigration.objects.exists()


def test_an_item_changed_before_its_renewal_is_skipped_at_the_boundary(api):
    old, new, other = fixed_price("1000"), fixed_price("1500"), fixed_price("700")
    sub, _ = subscribe(None, old)
    _migrate(api, old, new)
    from subscriptions.services.lifecycle import ItemSpec, subscription_change

    subscription_change(
        subscription=sub, items=[ItemSpec(price=other, quantity=None)], proration_behavior="none", now=at(2, 10)
    )
    renew_subscriptions_job(now=FEB28)
    sub.refresh_from_db()
    assert _live_prices(sub) == [other.id]
    assert SubscriptionPriceMigration.objects.get().status == "skipped"


@pytest.mark.parametrize(
    ("make_target", "body", "param", "code"),
    [
        (lambda old: old, {}, "to_price", "same_price"),
        (lambda old: fixed_price("1000", currency="eur"), {}, "to_price", "currency_mismatch"),
        (lambda old: fixed_price("1000", interval="year"), {}, "to_price", "interval_mismatch"),
        (lambda old: metered_price(), {}, "to_price", "usage_type"),
        (lambda old: fixed_price("1"), {"when": "tomorrow"}, "when", None),
        (lambda old: fixed_price("1"), {"dry_run": "maybe"}, "dry_run", None),
        (lambda old: fixed_price("1"), {"extra": 1}, "extra", None),
    ],
)
def test_bad_migrations_are_400_naming_the_field(api, make_target, body, param, code):
    old = fixed_price("1000")
    sub, _ = subscribe(None, old)
    response = _migrate(api, old, make_target(old), **body)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["param"] == param
    if code:
        assert error["code"] == code
    assert not PriceMigration.objects.exists()
    assert _live_prices(sub) == [old.id]


def test_unknown_prices(api):
    old = fixed_price("1000")
    response = api.post(f"/api/v1/prices/{old.id}/migrate", {"to_price": "price_missing"}, format="json")
    assert (response.status_code, response.json()["error"]["param"]) == (400, "to_price")
    response = api.post("/api/v1/prices/price_missing/migrate", {"to_price": old.id}, format="json")
    assert response.status_code == 404


def test_an_archived_old_price_still_migrates_but_an_archived_target_does_not(api):
    old, new = fixed_price("1000"), fixed_price("1500")
    subscribe(None, old)
    assert api.patch(f"/api/v1/prices/{old.id}", {"active": False}, format="json").status_code == 200
    assert _migrate(api, old, new).json()["subscriptions"][0]["status"] == "scheduled"
    archived = fixed_price("2000")
    api.patch(f"/api/v1/prices/{archived.id}", {"active": False}, format="json")
    response = _migrate(api, new, archived)
    assert (response.status_code, response.json()["error"]["code"]) == (400, "price_inactive")


@pytest.fixture
def operator() -> Client:
    user = get_user_model().objects.create_superuser("ops", "ops@example.com", "pw")
    client = Client()
    client.force_login(user)
    return client


def test_admin_runs_the_migration_dry_run_first(operator):
    old, new = fixed_price("1000"), fixed_price("1500")
    sub, _ = subscribe(None, old)
    form = {"from_price": old.id, "to_price": new.id, "when": "next_renewal"}
    dry = operator.post("/admin/subscriptions/pricemigration/add/", {**form, "dry_run": "on"}, follow=True)
    assert dry.status_code == 200
    page = dry.content.decode().lower()  # the admin capitalises a message's first letter
    assert f"{sub.id} ({sub.items.get().id}): would_schedule" in page
    assert not PriceMigration.objects.exists()
    done = operator.post("/admin/subscriptions/pricemigration/add/", form, follow=True)
    assert done.status_code == 200
    assert "scheduled" in done.content.decode()
    migration = PriceMigration.objects.get()
    assert migration.entries.get().subscription_id == sub.id
    assert SubscriptionItem.objects.get(subscription=sub).price_id == old.id  # until the renewal
