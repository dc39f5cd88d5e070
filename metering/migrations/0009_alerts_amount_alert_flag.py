"""`Customer.has_usage_alerts` is true for any active alert (invoice_amount alerts are evaluated on
ingestion too): set it for the customers whose only active alerts are invoice_amount ones."""

from django.db import migrations


def forwards(apps, schema_editor):
    UsageAlert = apps.get_model("metering", "UsageAlert")
    Customer = apps.get_model("customers", "Customer")
    with_alerts = UsageAlert.objects.filter(active=True).values("customer_id")
    Customer.objects.filter(pk__in=with_alerts, has_usage_alerts=False).update(has_usage_alerts=True)


class Migration(migrations.Migration):
    dependencies = [
        ("metering", "0008_uniq_unique_spans"),
        ("customers", "0005_meter_usage_alert_flag"),
    ]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
