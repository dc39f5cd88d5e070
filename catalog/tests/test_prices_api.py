from __future__ import annotations

from decimal import Decimal

import pytest

from catalog.models import Price
from catalog.pricing import FixedAmount
from catalog.tests.factories import GRADUATED_USD, PriceFactory, ProductFactory
from webhooks.models import BillingEvent

pytestmark = pytest.mark.django_db


def _create(api, **overrides):
    body = {
        "type": "standalone",
        "duration": {"amount": 1, "unit": "month"},
        "amount": {"model": "fixed", "currency": "usd", "unit": "1000", "flat": 0},
    }
    body.update(overrides)
    return api.post("/api/v1/prices", body, format="json")


def test_create_the_api_md_example(api):
    product = ProductFactory()
    body = {
        "type": "product",
        "product": product.id,
        "duration": {"amount": 1, "unit": "month"},
        "amount": GRADUATED_USD,
        "meter": None,
        "name": None,
        "description": "internal note",
        "lookup_key": "api-calls",
    }
    response = api.post("/api/v1/prices", body, format="json")
    assert response.status_code == 201, response.content
    price = response.json()
    assert price["id"].startswith("price_")
    created_at, updated_at = price.pop("created_at"), price.pop("updated_at")
    assert created_at.endswith("Z") and updated_at.endswith("Z")
    assert price == {
        "id": price["id"],
        "object": "price",
        "type": "product",
        "product": product.id,
        "duration": {"amount": 1, "unit": "month"},
        "amount": {
            "model": "tiered",
            "currency": "usd",
            "mode": "graduated",
            # up_to is sent as an integer and returned as a decimal string, like every decimal.
            "tiers": [{"up_to": "1000", "unit": "0.5", "flat": 0}, {"up_to": None, "unit": "0.1", "flat": 500}],
        },
        "name": "Graduated, USD / month",
        "description": "internal note",
        "meter": None,
        "lookup_key": "api-calls",
        "active": True,
        "metadata": {},
    }
    row = Price.objects.get(pk=price["id"])
    assert (row.currency, row.model, row.mode) == ("usd", "tiered", "graduated")
    event = BillingEvent.objects.get(type="price.created")
    assert event.object_id == row.id and event.data["amount"] == price["amount"]


def test_create_fixed_standalone_normalizes_the_amount(api):
    response = _create(api, amount={"model": "fixed", "currency": "EUR", "unit": Decimal("2.50"), "flat": "100"})
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["type"] == "standalone" and body["product"] is None
    assert body["amount"] == {"model": "fixed", "currency": "eur", "unit": "2.5", "flat": 100}
    assert body["description"] is None and body["lookup_key"] is None


def test_unit_prices_with_twelve_decimals_are_stored_exactly(api):
    # Beyond the ~15 significant digits a float column keeps: this is why the amount is stored as JSON.
    unit = "123456789012.123456789012"
    response = _create(api, amount={"model": "fixed", "currency": "usd", "unit": unit, "flat": 2**62})
    assert response.status_code == 201, response.content
    price = Price.objects.get(pk=response.json()["id"])
    assert price.engine_amount == FixedAmount(currency="usd", unit=Decimal(unit), flat=2**62)
    assert api.get(f"/api/v1/prices/{price.id}").json()["amount"]["unit"] == unit


@pytest.mark.parametrize(
    ("amount", "duration", "name"),
    [
        ({"model": "fixed", "currency": "usd", "unit": "1000"}, {"amount": 1, "unit": "month"}, "$10.00 / month"),
        ({"model": "fixed", "currency": "usd", "flat": 1000}, {"amount": 1, "unit": "month"}, "$10.00 / month"),
        ({"model": "fixed", "currency": "jpy", "unit": 1000}, {"amount": 1, "unit": "year"}, "¥1,000 / year"),
        (
            {"model": "fixed", "currency": "usd", "unit": "0.04"},
            {"amount": 1, "unit": "month"},
            "$0.0004 per unit / month",
        ),
        (GRADUATED_USD, {"amount": 1, "unit": "month"}, "Graduated, USD / month"),
        ({**GRADUATED_USD, "mode": "total"}, {"amount": 3, "unit": "month"}, "Volume, USD / 3 months"),
        ({"model": "fixed", "currency": "kwd", "unit": 1500}, {"amount": 2, "unit": "week"}, "KWD 1.500 / 2 weeks"),
    ],
)
def test_generated_names(api, amount, duration, name):
    response = _create(api, amount=amount, duration=duration)
    assert response.status_code == 201, response.content
    assert response.json()["name"] == name


def test_explicit_name_is_kept_and_null_on_patch_regenerates_it(api):
    price_id = _create(api, name="Pro plan").json()["id"]
    assert api.get(f"/api/v1/prices/{price_id}").json()["name"] == "Pro plan"
    response = api.patch(f"/api/v1/prices/{price_id}", {"name": None}, format="json")
    assert response.json()["name"] == "$10.00 / month"


def test_get_and_unknown_id(api):
    price = PriceFactory()
    body = api.get(f"/api/v1/prices/{price.id}").json()
    assert body["id"] == price.id and body["product"] == price.product_id
    response = api.get("/api/v1/prices/price_nope")
    assert response.status_code == 404 and response.json()["error"]["type"] == "not_found"


def test_list_filters(api):
    product = ProductFactory()
    fixed = PriceFactory(product=product, lookup_key="basic")
    graduated = PriceFactory(graduated=True, product=product, active=False)
    standalone = PriceFactory(standalone=True, amount={"model": "fixed", "currency": "eur", "unit": "5", "flat": 0})
    PriceFactory()  # another product's price

    def ids(params):
        response = api.get("/api/v1/prices", params)
        assert response.status_code == 200, response.content
        return {row["id"] for row in response.json()["data"]}

    assert len(ids({})) == 4
    assert ids({"product": product.id}) == {fixed.id, graduated.id}
    assert ids({"product": product.id, "active": "true"}) == {fixed.id}
    assert ids({"active": "false"}) == {graduated.id}
    assert ids({"currency": "EUR"}) == {standalone.id}
    assert ids({"lookup_key": "basic"}) == {fixed.id}
    assert ids({"type": "standalone"}) == {standalone.id}
    for params in ({"type": "metered"}, {"active": "1"}, {"mode": "total"}):
        response = api.get("/api/v1/prices", params)
        assert response.status_code == 400
        assert response.json()["error"]["param"] == next(iter(params))


def test_patch_updates_the_mutable_fields(api):
    price = PriceFactory(metadata={"a": "1"})
    response = api.patch(
        f"/api/v1/prices/{price.id}",
        {"name": "Seat", "description": "note", "lookup_key": "seat", "active": False, "metadata": {"b": "2"}},
        format="json",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["name"], body["description"], body["lookup_key"], body["active"]) == ("Seat", "note", "seat", False)
    assert body["metadata"] == {"a": "1", "b": "2"}
    event = BillingEvent.objects.get(type="price.updated")
    assert set(event.previous_attributes) == {"name", "description", "lookup_key", "active", "metadata"}
    assert event.previous_attributes["active"] is True
    # Clearing: null description and lookup key.
    body = api.patch(f"/api/v1/prices/{price.id}", {"description": None, "lookup_key": ""}, format="json").json()
    assert body["description"] is None and body["lookup_key"] is None


def test_patch_with_no_change_emits_nothing(api):
    price = PriceFactory()
    assert api.patch(f"/api/v1/prices/{price.id}", {"active": True}, format="json").status_code == 200
    assert not BillingEvent.objects.exists()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("amount", {"model": "fixed", "currency": "usd", "unit": "2000"}),
        ("currency", "eur"),
        ("duration", {"amount": 1, "unit": "year"}),
        ("type", "standalone"),
        ("product", "prod_other"),
        ("meter", "mtr_x"),
        ("meter", None),
        ("amount", None),
    ],
)
def test_immutable_fields_are_400_naming_the_field(api, field, value):
    price = PriceFactory()
    response = api.patch(f"/api/v1/prices/{price.id}", {field: value, "name": "Changed"}, format="json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert (error["param"], error["code"]) == (field, "immutable")
    price.refresh_from_db()
    assert price.name == "$10.00 / month" and price.amount["unit"] == "1000"
    assert not BillingEvent.objects.exists()


def test_metered_price_refers_to_a_live_meter(api):
    from metering.tests.factories import MeterFactory

    response = _create(api, meter="mtr_01")
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["param"], error["code"]) == ("meter", "meter_not_found")
    archived = MeterFactory(active=False)
    error = _create(api, meter=archived.id).json()["error"]
    assert (error["param"], error["code"]) == ("meter", "meter_inactive")
    assert not Price.objects.exists()
    meter = MeterFactory()
    response = _create(api, meter=meter.id)
    assert response.status_code == 201
    assert response.json()["meter"] == meter.id
    assert Price.objects.get().meter == meter
    # A meter that prices refer to cannot be deleted, only archived.
    assert api.delete(f"/api/v1/meters/{meter.id}").json()["error"]["code"] == "meter_in_use"
    assert _create(api, meter=None).status_code == 201


def test_archived_product_takes_no_new_prices(api):
    product = ProductFactory(active=False)
    response = _create(api, type="product", product=product.id)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "product_inactive"
    assert not Price.objects.exists()


# --- lookup_key -----------------------------------------------------------------------------------------


def test_lookup_key_is_unique_among_active_prices(api):
    first = _create(api, lookup_key="pro-monthly").json()
    response = _create(api, lookup_key="pro-monthly")
    assert response.status_code == 409
    error = response.json()["error"]
    assert (error["type"], error["code"], error["param"]) == ("conflict", "lookup_key_exists", "lookup_key")
    assert error["price"] == first["id"]
    assert Price.objects.count() == 1 and BillingEvent.objects.count() == 1

    # An archived price frees its key for its successor, and keeps it for history.
    assert api.patch(f"/api/v1/prices/{first['id']}", {"active": False}, format="json").status_code == 200
    second = _create(api, lookup_key="pro-monthly")
    assert second.status_code == 201
    assert api.get(f"/api/v1/prices/{first['id']}").json()["lookup_key"] == "pro-monthly"
    # ...so the archived one cannot come back while the key is taken.
    response = api.patch(f"/api/v1/prices/{first['id']}", {"active": True}, format="json")
    assert response.status_code == 409 and response.json()["error"]["code"] == "lookup_key_exists"
    assert not Price.objects.get(pk=first["id"]).active


def test_patching_a_taken_lookup_key_is_409_and_blank_keys_never_collide(api):
    _create(api, lookup_key="taken")
    other = _create(api).json()
    assert _create(api).status_code == 201  # two prices without a key
    response = api.patch(f"/api/v1/prices/{other['id']}", {"lookup_key": "taken"}, format="json")
    assert response.status_code == 409
    assert Price.objects.get(pk=other["id"]).lookup_key == ""
    # Inactive prices may share a key with each other and with the active one.
    assert _create(api, lookup_key="taken", active=False).status_code == 201


def test_transfer_lookup_key_moves_it_in_one_step(api):
    old = _create(api, lookup_key="pro").json()
    response = _create(api, lookup_key="pro", transfer_lookup_key=True, amount=GRADUATED_USD)
    assert response.status_code == 201, response.content
    assert response.json()["lookup_key"] == "pro"
    old_now = api.get(f"/api/v1/prices/{old['id']}").json()
    assert old_now["lookup_key"] is None and old_now["active"] is True
    event = BillingEvent.objects.get(type="price.updated")
    assert event.object_id == old["id"] and event.previous_attributes == {"lookup_key": "pro"}
    assert [row["id"] for row in api.get("/api/v1/prices", {"lookup_key": "pro"}).json()["data"]] == [
        response.json()["id"]
    ]


def test_volume_is_accepted_as_the_common_name_of_total_tiers(api):
    body = {
        "type": "standalone",
        "duration": {"amount": 1, "unit": "month"},
        "amount": {
            "model": "tiered",
            "currency": "usd",
            "mode": "volume",
            "tiers": [{"up_to": "100", "unit": "2", "flat": 0}, {"up_to": None, "unit": "1", "flat": 0}],
        },
    }
    created = api.post("/api/v1/prices", body, format="json")
    assert created.status_code == 201, created.json()
    amount = created.json()["amount"]
    assert amount["mode"] == "total"
    assert amount["tiers"][0]["up_to"] == "100"  # a decimal string, as documented
    quote = api.post(f"/api/v1/prices/{created.json()['id']}/quote", {"quantity": "150"}, format="json").json()
    assert quote["amount"] == 150  # 150 units, all at the price of the tier 150 falls in (1 minor unit each)
