"""Detach old partitions of the usage-events table, to archive or drop them (PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from metering.partitions import detachable_before, is_partitioned, partitions_detach, partitions_list


class Command(BaseCommand):
    help = (
        "Detach every events partition that ends on or before --before (default: the oldest date allowed, "
        "the backfill window plus a day ago). Detached partitions stay as plain tables to pg_dump and drop; "
        "--drop drops them at once. Their hours stay in the roll-ups; dedup keys are kept."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--before", help="RFC 3339 date or time, UTC (e.g. 2026-01-01)")
        parser.add_argument("--drop", action="store_true", help="drop the detached tables as well")
        parser.add_argument("--list", action="store_true", help="only list the attached partitions")

    def handle(self, *args: Any, **options: Any) -> None:
        if not is_partitioned():
            raise CommandError("The events table is partitioned on PostgreSQL only; this database is not.")
        now = timezone.now()
        if options["list"]:
            for part in partitions_list():
                self.stdout.write(f"{part.name}  [{part.start:%Y-%m-%d %H:%M}, {part.end:%Y-%m-%d %H:%M})")
            return
        before = detachable_before(now)
        if options["before"]:
            try:
                before = datetime.fromisoformat(options["before"])
            except ValueError:
                raise CommandError("--before must be an RFC 3339 date or time, e.g. 2026-01-01") from None
            before = before.replace(tzinfo=before.tzinfo or UTC).astimezone(UTC)
        try:
            done = partitions_detach(before=before, now=now, drop=options["drop"])
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        verb = "dropped" if options["drop"] else "detached"
        for name in done:
            self.stdout.write(f"{verb} {name}")
        self.stdout.write(f"{len(done)} partition(s) {verb}.")
