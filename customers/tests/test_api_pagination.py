from __future__ import annotations

import pytest

from customers.tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db


def test_pages_cover_every_row_once_newest_first(api):
    created = [CustomerFactory().id for _ in range(25)]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 10}
        if cursor:
            params["cursor"] = cursor
        body = api.get("/api/v1/customers", params).json()
        pages += 1
        seen.extend(row["id"] for row in body["data"])
        if not body["has_more"]:
            assert body["next_cursor"] is None
            break
        cursor = body["next_cursor"]
    assert pages == 3
    assert seen == sorted(created, reverse=True)


def test_default_limit_is_20(api):
    for _ in range(21):
        CustomerFactory()
    body = api.get("/api/v1/customers").json()
    assert len(body["data"]) == 20
    assert body["has_more"] is True


def test_rows_added_in_front_do_not_shift_the_next_page(api):
    for _ in range(4):
        CustomerFactory()
    first = api.get("/api/v1/customers", {"limit": 2}).json()
    CustomerFactory()  # newer than everything
    second = api.get("/api/v1/customers", {"limit": 2, "cursor": first["next_cursor"]}).json()
    assert not {r["id"] for r in first["data"]} & {r["id"] for r in second["data"]}
    assert len(second["data"]) == 2


@pytest.mark.parametrize("limit", ["0", "101", "abc", "-1"])
def test_bad_limit_is_400(api, limit):
    response = api.get("/api/v1/customers", {"limit": limit})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "limit"


def test_bad_cursor_is_400(api):
    response = api.get("/api/v1/customers", {"cursor": "%%%not-base64"})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "cursor"


def test_unknown_filter_is_400(api):
    response = api.get("/api/v1/customers", {"colour": "red"})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "colour"
