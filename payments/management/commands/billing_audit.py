from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from billing_site.progress import Summary, progress_bar
from payments.audit import CHECKS


class Command(BaseCommand):
    help = (
        "Check the money ledgers: balances equal the sum of their transactions and their ending balances "
        "chain, no credit grant burned beyond its amount, open and paid invoices add up, credit notes never "
        "exceed invoice totals, refunds and lost disputes never exceed what was received, provider money for an "
        "invoice is applied or credited, a credit note's refund part is accounted for, disputes fit their "
        "payments, credits + balance + provider money applied make each invoice's amount_paid, nothing is given "
        "back beyond what was paid, no open invoice waits on a stuck payment, no payment is in flight on a paid "
        "or void invoice, and every credit note credits the tax of what it credits. Prints every problem; exits "
        "1 if any."
    )

    def add_arguments(self, parser) -> None:  # type: ignore[no-untyped-def]
        parser.add_argument("--check", action="append", choices=list(CHECKS), help="run only these checks")

    def handle(self, *args, **options) -> None:  # type: ignore[no-untyped-def]
        names = options.get("check") or list(CHECKS)
        problems, summary = 0, Summary("billing_audit")
        bar = progress_bar(names, stream=self.stderr, desc="billing_audit", unit="check")
        for name in bar:
            bar.set_postfix_str(name)
            found = CHECKS[name]()
            problems += len(found)
            for problem in found:
                self.stdout.write(f"{name}: {problem}")
            if not found:
                self.stdout.write(f"{name}: ok")
        self.stdout.write(summary.line(checks=len(names), problems=problems))
        if problems:
            raise CommandError(f"billing_audit found {problems} problem(s).", returncode=1)
        self.stdout.write(self.style.SUCCESS("billing_audit: every check passed."))
