# Balance credits for a payment's unapplied money and for a failed credit-note refund, once each.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('payments', '0001_initial'),
    ]

    operations = [
        migrations.AddField(
            model_name='balancetransaction',
            name='payment_intent',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='payments.paymentintent'),
        ),
        migrations.AddField(
            model_name='balancetransaction',
            name='refund',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='payments.refund'),
        ),
        migrations.AlterField(
            model_name='balancetransaction',
            name='type',
            field=models.CharField(choices=[('adjustment', 'Adjustment'), ('credit_note', 'Credit Note'), ('invoice_payment', 'Invoice Payment'), ('invoice_credit', 'Invoice Credit'), ('refund', 'Refund'), ('reversal', 'Reversal'), ('overpayment', 'Overpayment'), ('refund_failed', 'Refund Failed')], max_length=20),
        ),
        migrations.AddConstraint(
            model_name='balancetransaction',
            constraint=models.UniqueConstraint(condition=models.Q(('type', 'overpayment')), fields=('payment_intent',), name='balance_overpayment_once'),
        ),
        migrations.AddConstraint(
            model_name='balancetransaction',
            constraint=models.UniqueConstraint(condition=models.Q(('type', 'refund_failed')), fields=('refund',), name='balance_refund_failed_once'),
        ),
        migrations.AddConstraint(
            model_name='balancetransaction',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(('type', 'overpayment'), _negated=True), models.Q(('amount__gt', 0), ('payment_intent__isnull', False)), _connector='OR'), name='balance_overpayment_names_its_payment'),
        ),
        migrations.AddConstraint(
            model_name='balancetransaction',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(('type', 'refund_failed'), _negated=True), models.Q(('amount__gt', 0), ('refund__isnull', False)), _connector='OR'), name='balance_refund_failed_names_its_refund'),
        ),
    ]
