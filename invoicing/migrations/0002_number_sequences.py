from django.db import migrations


def create_sequences(apps, schema_editor):
    # The rows exist before the first finalization, so concurrent finalizations lock the same row
    # instead of racing to create it.
    NumberSequence = apps.get_model("invoicing", "NumberSequence")
    for name in ("invoice", "credit_note"):
        NumberSequence.objects.get_or_create(name=name)


class Migration(migrations.Migration):
    dependencies = [("invoicing", "0001_initial")]
    operations = [migrations.RunPython(create_sequences, migrations.RunPython.noop)]
