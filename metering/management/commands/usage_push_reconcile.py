from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from billing_site.management.commands.run_job import parse_rfc3339
from billing_site.progress import progress_bar
from customers.models import Customer
from metering.push.reconcile import usage_push_reconcile

_COLUMNS = ("customer", "external_id", "meter", "slice_start", "usage", "pushed", "provider", "difference", "status")


class Command(BaseCommand):
    help = (
        "Compare our per-slice usage totals with Stripe's meter event summaries for every pushed (customer, "
        "meter) in [--start, --end), print a table (every slice with usage; --differing for only those that "
        "differ), and store the result (admin: Usage push reconciliations). Exits 1 if any slice differs."
    )

    def add_arguments(self, parser) -> None:  # type: ignore[no-untyped-def]
        parser.add_argument("--start", required=True, help="RFC 3339, e.g. 2026-03-01T00:00:00Z")
        parser.add_argument("--end", required=True, help="RFC 3339, exclusive")
        parser.add_argument("--customer", help="one customer: its id (cus_...) or external id")
        parser.add_argument("--differing", action="store_true", help="print only the slices that differ")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def handle(self, *args, **options) -> None:  # type: ignore[no-untyped-def]
        try:
            start, end = parse_rfc3339(options["start"]), parse_rfc3339(options["end"])
        except CommandError as exc:
            raise CommandError(str(exc).replace("--now", "--start/--end")) from None
        if start >= end:
            raise CommandError("--start must be before --end")
        customer = None
        if options["customer"]:
            ref = options["customer"]
            customer = Customer.objects.filter(pk=ref).first() or Customer.objects.filter(external_id=ref).first()
            if customer is None:
                raise CommandError(f"No customer has the id or external id {ref!r}")

        def progress(lanes):  # type: ignore[no-untyped-def]
            return progress_bar(lanes, stream=self.stderr, desc="lanes", unit="lane", disable=options["no_progress"])

        record, rows = usage_push_reconcile(
            start=start, end=end, customer=customer, now=timezone.now(), progress=progress
        )
        if record.status == record.Status.ERROR:
            raise CommandError(f"{record.error} (stored as {record.id})", returncode=2)
        shown = [row.as_dict() for row in rows if not options["differing"] or row.status != "ok"]
        self._table(shown)
        summary = (
            f"{record.slices} slice(s) with usage in {record.lanes} lane(s), {record.start:%Y-%m-%dT%H:%MZ} - "
            f"{record.end:%Y-%m-%dT%H:%MZ}: {record.mismatches} differ (stored as {record.id})"
        )
        if record.mismatches:
            raise CommandError(summary, returncode=1)
        self.stdout.write(self.style.SUCCESS(summary))

    def _table(self, rows: list[dict[str, str]]) -> None:
        cells = [[str(row[c]) for c in _COLUMNS] for row in rows]
        widths = [max([len(c), *(len(line[i]) for line in cells)]) for i, c in enumerate(_COLUMNS)]
        numeric = {"usage", "pushed", "provider", "difference"}
        for line in [list(_COLUMNS), *cells]:
            self.stdout.write(
                "  ".join(
                    value.rjust(width) if name in numeric else value.ljust(width)
                    for name, value, width in zip(_COLUMNS, line, widths, strict=True)
                ).rstrip()
            )
