from __future__ import annotations

import factory

from metering.models import Meter


class MeterFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Meter

    code = factory.Sequence(lambda n: f"meter-{n}")
    name = factory.Sequence(lambda n: f"Meter {n}")
    aggregation = Meter.Aggregation.SUM
