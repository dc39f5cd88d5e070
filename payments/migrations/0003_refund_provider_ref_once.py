# One refund row per provider refund (refunds made at the provider are recorded from its webhooks).

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('payments', '0002_balance_overpayment_refund_failed'),
    ]

    operations = [
        migrations.AddConstraint(
            model_name='refund',
            constraint=models.UniqueConstraint(condition=models.Q(('provider_ref', ''), _negated=True), fields=('payment_intent', 'provider_ref'), name='refund_provider_ref_once'),
        ),
    ]
