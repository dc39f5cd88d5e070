# Disputes of payments, from the provider's webhooks.

import billing_site.ids
import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('customers', '0001_initial'),
        ('invoicing', '0002_number_sequences'),
        ('payments', '0003_refund_provider_ref_once'),
    ]

    operations = [
        migrations.CreateModel(
            name='Dispute',
            fields=[
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('updated_at', models.DateTimeField(auto_now=True)),
                ('id', models.CharField(default=billing_site.ids.IdGenerator('dp'), editable=False, max_length=40, primary_key=True, serialize=False)),
                ('provider', models.CharField(max_length=20)),
                ('provider_ref', models.CharField(max_length=255)),
                ('provider_charge_ref', models.CharField(blank=True, max_length=255)),
                ('amount', models.BigIntegerField()),
                ('currency', models.CharField(max_length=3)),
                ('reason', models.CharField(blank=True, max_length=50)),
                ('status', models.CharField(choices=[('warning_needs_response', 'Warning Needs Response'), ('warning_under_review', 'Warning Under Review'), ('warning_closed', 'Warning Closed'), ('needs_response', 'Needs Response'), ('under_review', 'Under Review'), ('won', 'Won'), ('lost', 'Lost'), ('prevented', 'Prevented')], max_length=30)),
                ('evidence_due_by', models.DateTimeField(blank=True, null=True)),
                ('provider_created_at', models.DateTimeField(blank=True, null=True)),
                ('closed_at', models.DateTimeField(blank=True, null=True)),
                ('amount_lost', models.BigIntegerField(default=0, help_text='Returned to the cardholder (a lost dispute).')),
            ],
        ),
        migrations.AddField(
            model_name='dispute',
            name='customer',
            field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to='customers.customer'),
        ),
        migrations.AddField(
            model_name='dispute',
            name='invoice',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='invoicing.invoice'),
        ),
        migrations.AddField(
            model_name='dispute',
            name='payment_intent',
            field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='disputes', to='payments.paymentintent'),
        ),
        migrations.AddIndex(
            model_name='dispute',
            index=models.Index(fields=['customer', '-id'], name='dispute_customer_idx'),
        ),
        migrations.AddConstraint(
            model_name='dispute',
            constraint=models.CheckConstraint(condition=models.Q(('amount__gt', 0)), name='dispute_amount_positive'),
        ),
        migrations.AddConstraint(
            model_name='dispute',
            constraint=models.UniqueConstraint(fields=('provider', 'provider_ref'), name='dispute_provider_ref_once'),
        ),
        migrations.AddConstraint(
            model_name='dispute',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(('amount_lost', models.F('amount')), ('status', 'lost')), models.Q(models.Q(('status', 'lost'), _negated=True), ('amount_lost', 0)), _connector='OR'), name='dispute_lost_amount'),
        ),
        migrations.AddConstraint(
            model_name='dispute',
            constraint=models.CheckConstraint(condition=models.Q(('closed_at__isnull', True), ('status__in', ['warning_closed', 'won', 'lost', 'prevented']), _connector='OR'), name='dispute_closed_only_when_final'),
        ),
    ]
