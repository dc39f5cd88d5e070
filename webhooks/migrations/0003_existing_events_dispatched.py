"""Events written before deliveries existed are history, not a backlog: mark them fanned out, so an
endpoint created after this release is not sent every event the outbox ever recorded. (Hand-written SQL,
kept in its own migration so it can be re-based onto regenerated migrations.)"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("webhooks", "0002_delivery_and_inbound")]

    operations = [
        migrations.RunSQL(
            "UPDATE webhooks_billingevent SET dispatched_at = created_at WHERE dispatched_at IS NULL",
            reverse_sql=migrations.RunSQL.noop,
        ),
    ]
