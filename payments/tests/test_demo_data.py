from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command

from customers.models import Customer
from invoicing.models import Invoice
from subscriptions.models import Subscription

pytestmark = pytest.mark.django_db


def test_demo_data_loads_once_and_bills():
    call_command("load_demo_data", stdout=StringIO())
    call_command("load_demo_data", stdout=StringIO())  # a second `make run` changes nothing
    assert Customer.objects.filter(external_id__startswith="tenant-").count() == 3
    sub = Subscription.objects.get()
    assert sub.customer.external_id == "tenant-acme"
    invoice = Invoice.objects.get()
    assert invoice.total == 3 * 2900 and invoice.status == "open"
    out = StringIO()
    call_command("billing_audit", stdout=out)
    assert "every check passed" in out.getvalue()
