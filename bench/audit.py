"""billing_audit at N and 10N customers: rows/s at each size, their ratio, and peak memory.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_audit .venv/bin/python bench/audit.py \
        --customers 2000 --baseline /path/to/main/payments/audit.py

Books: per customer one balance (an adjustment and a payment from it), one credit grant burned on an
open invoice, three invoices (one paid partly from the balance and by card, one paid by card with a
credit note refunded to the card, one open) of two lines each, their payment intents, the credit note,
its line and its refund: 20 rows per customer, written with bulk inserts. A few customers' books are
then broken on purpose (a balance, a refund reservation, an invoice's remainder, a failed refund), so
every check has rows to report and the two versions' problem lists can be compared.

At each size, `audit_all` runs alternately with today's `payments/audit.py` and with the `--baseline`
module (e.g. main's, from a git worktree), `--repeat` times each; rows/s is the audited rows over the
best time. Peak memory per version: tracemalloc's peak (Python objects) over one `audit_all` in this
process, and the peak RSS of a fresh process that runs only `audit_all` (`--rss-only`).
`--checks` also times each check of `CHECKS` on its own (alternating, best of `--repeat`) at both
sizes and prints how much each grew.

The database named by DATABASE_URL is dropped and recreated: its name must contain "bench".
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import resource
import subprocess
import sys
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_site.settings")
os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-0123456789abcdefghij")
os.environ.setdefault("PUBLIC_BASE_URL", "http://127.0.0.1:8000")
os.environ.setdefault("ALLOWED_HOSTS", "127.0.0.1")
os.environ.setdefault("LOG_LEVEL", "WARNING")

NOW = datetime(2026, 11, 1, tzinfo=UTC)
BATCH = 5000
BROKEN = 4  # customers whose books are broken on purpose (the first ones)


def recreate_database() -> None:
    import psycopg
    from django.conf import settings

    db = settings.DATABASES["default"]
    if "bench" not in db["NAME"]:
        raise SystemExit("Refusing to drop a database whose name does not contain 'bench'.")
    conninfo = (
        f"host={db['HOST']} port={db['PORT'] or 5432} dbname=postgres user={db['USER']} password={db['PASSWORD']}"
    )
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db["NAME"]}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{db["NAME"]}"')


def build(start: int, count: int) -> None:
    """Clean books for customers start .. start + count - 1."""
    from customers.models import Customer
    from invoicing.models import Invoice, InvoiceLine
    from payments.models import (
        BalanceTransaction,
        CreditBurn,
        CreditGrant,
        CreditNote,
        CreditNoteLine,
        CustomerBalance,
        PaymentIntent,
        Refund,
    )

    for lo in range(start, start + count, BATCH):
        hi = min(lo + BATCH, start + count)
        customers = Customer.objects.bulk_create(
            [
                Customer(external_id=f"audit-{i}", name=f"Tenant {i}", currency="usd", address_country="US")
                for i in range(lo, hi)
            ]
        )
        balances = CustomerBalance.objects.bulk_create(
            [CustomerBalance(customer=c, currency="usd", balance=800, updated_at=NOW) for c in customers]
        )
        invoices, lines = [], []
        for i, c in zip(range(lo, hi), customers, strict=True):
            common = {"customer": c, "currency": "usd", "billing_reason": "manual", "finalized_at": NOW}
            paid = {"status": "paid", "paid_at": NOW}
            invoices += [
                Invoice(number=f"BA-{i}-1", total=1000, subtotal=1000, amount_due=1000, amount_paid=1000,
                        balance_applied=200, **common, **paid),
                Invoice(number=f"BA-{i}-2", total=2000, subtotal=2000, amount_due=2000, amount_paid=2000,
                        credited=500, **common, **paid),
                Invoice(number=f"BA-{i}-3", status="open", total=1500, subtotal=1500, amount_due=1500,
                        amount_paid=300, amount_remaining=1200, credits_applied=300, **common),
            ]  # fmt: skip
        Invoice.objects.bulk_create(invoices)
        for k, inv in enumerate(invoices):
            first = {0: 600, 1: 1200, 2: 900}[k % 3]
            lines += [
                InvoiceLine(invoice=inv, position=1, kind="fixed", description="plan", amount=first,
                            credited=500 if k % 3 == 1 else 0),
                InvoiceLine(invoice=inv, position=2, kind="usage", description="usage", amount=inv.total - first),
            ]  # fmt: skip
        InvoiceLine.objects.bulk_create(lines)
        txns, grants, intents, notes = [], [], [], []
        for n, (c, bal) in enumerate(zip(customers, balances, strict=True)):
            a = invoices[3 * n]
            txns += [
                BalanceTransaction(balance=bal, customer=c, currency="usd", type="adjustment", amount=1000,
                                   ending_balance=1000, created_at=NOW),
                BalanceTransaction(balance=bal, customer=c, currency="usd", type="invoice_payment", amount=-200,
                                   ending_balance=800, invoice=a, created_at=NOW),
            ]  # fmt: skip
            grants.append(CreditGrant(customer=c, amount=500, currency="usd", effective_at=NOW - timedelta(days=30)))
            intents += [
                PaymentIntent(customer=c, invoice=a, amount=800, currency="usd", status="succeeded",
                              amount_received=800, provider="fake", succeeded_at=NOW),
                PaymentIntent(customer=c, invoice=invoices[3 * n + 1], amount=2000, currency="usd",
                              status="succeeded", amount_received=2000, amount_refunded=500, provider="fake",
                              succeeded_at=NOW),
            ]  # fmt: skip
            notes.append(
                CreditNote(number=f"BACN-{lo + n}", invoice=invoices[3 * n + 1], customer=c, currency="usd",
                           amount=500, refund_amount=500)
            )  # fmt: skip
        BalanceTransaction.objects.bulk_create(txns)
        CreditGrant.objects.bulk_create(grants)
        PaymentIntent.objects.bulk_create(intents)
        CreditNote.objects.bulk_create(notes)
        CreditBurn.objects.bulk_create(
            [
                CreditBurn(
                    grant=g, invoice=invoices[3 * n + 2], invoice_line=lines[6 * n + 4], amount=300, created_at=NOW
                )
                for n, g in enumerate(grants)
            ]
        )
        CreditNoteLine.objects.bulk_create(
            [
                CreditNoteLine(credit_note=cn, invoice_line=lines[6 * n + 2], description="plan", amount=500)
                for n, cn in enumerate(notes)
            ]
        )
        Refund.objects.bulk_create(
            [
                Refund(
                    payment_intent=intents[2 * n + 1],
                    invoice=notes[n].invoice,
                    credit_note=cn,
                    amount=500,
                    currency="usd",
                    status="succeeded",
                )
                for n, cn in enumerate(notes)
            ]
        )


def break_books() -> None:
    """Break the first customers' books, one way each (see the module docstring)."""
    from django.db.models import F

    from customers.models import Customer
    from invoicing.models import Invoice
    from payments.models import CustomerBalance, PaymentIntent, Refund

    ids = {c.external_id: c.pk for c in Customer.objects.filter(external_id__in=[f"audit-{i}" for i in range(4)])}
    CustomerBalance.objects.filter(customer_id=ids["audit-0"]).update(balance=F("balance") + 1)
    PaymentIntent.objects.filter(customer_id=ids["audit-1"], amount=2000).update(amount_refunded=400)
    Invoice.objects.filter(customer_id=ids["audit-2"], status="open").update(amount_remaining=1205)
    Refund.objects.filter(payment_intent__customer_id=ids["audit-3"]).update(status="failed")


def audited_rows() -> int:
    from customers.models import Customer
    from invoicing.models import Invoice, InvoiceLine
    from payments.models import (
        BalanceTransaction,
        CreditBurn,
        CreditGrant,
        CreditNote,
        CreditNoteLine,
        CustomerBalance,
        PaymentIntent,
        Refund,
    )

    models = (Customer, Invoice, InvoiceLine, BalanceTransaction, CreditBurn, CreditGrant, CreditNote,
              CreditNoteLine, CustomerBalance, PaymentIntent, Refund)  # fmt: skip
    return sum(m.objects.count() for m in models)


def load(path: str | None):  # type: ignore[no-untyped-def]
    if path is None:
        import payments.audit

        return payments.audit
    spec = importlib.util.spec_from_file_location("audit_baseline", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def _peak_rss_mib() -> float:
    """This process's peak RSS (VmHWM: per address space, so not the parent's as ru_maxrss is after exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_only(path: str | None) -> None:
    """In a fresh process: run audit_all once and print the peak RSS before and after it, in MiB."""
    import django

    django.setup()
    module = load(path)
    before = _peak_rss_mib()
    module.audit_all(now=NOW)
    print(f"{before:.1f} {_peak_rss_mib():.1f}")


def time_checks(label: str, versions: dict, repeat: int) -> dict:
    """Each check of `CHECKS` on its own, alternating the versions, best of `repeat`: {version: {check: s}}."""
    best: dict[str, dict[str, float]] = {name: {} for name in versions}
    for _ in range(repeat):
        for name, module in versions.items():
            for check_name, check in module.CHECKS.items():
                started = time.perf_counter()
                check(NOW) if check is module.audit_stuck_intents else check()
                elapsed = time.perf_counter() - started
                best[name][check_name] = min(elapsed, best[name].get(check_name, elapsed))
    for check_name in best["after"]:
        figures = ", ".join(f"{name} {best[name].get(check_name, float('nan')):.3f}s" for name in versions)
        print(f"{label} check {check_name!r}: {figures}")
    return best


def measure(label: str, versions: dict, repeat: int, baseline_path: str) -> dict:
    from django.db import connection

    rows = audited_rows()
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    times: dict[str, list[float]] = {name: [] for name in versions}
    found: dict[str, list[str]] = {}
    for _ in range(repeat):
        for name, module in versions.items():  # alternate: before, after, before, after
            started = time.perf_counter()
            found[name] = module.audit_all(now=NOW)
            times[name].append(time.perf_counter() - started)
    result = {"rows": rows}
    for name, module in versions.items():
        tracemalloc.start()
        module.audit_all(now=NOW)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        argv = [sys.executable, __file__, "--rss-only"] + (["--baseline", baseline_path] if name == "before" else [])
        out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout.split()
        best = min(times[name])
        result[name] = {"best": best, "rate": rows / best, "peak": peak, "rss": (float(out[0]), float(out[1]))}
        print(
            f"{label} {name:6}: {rows:,} rows, best {best:.2f}s of {[round(t, 2) for t in times[name]]} = "
            f"{rows / best:,.0f} rows/s; tracemalloc peak {peak / 2**20:.1f} MiB; RSS {out[0]} -> {out[1]} MiB; "
            f"{len(found[name])} problems"
        )
    same = sorted(found["before"]) == sorted(found["after"])
    print(f"{label} problems identical before/after: {same}")
    if not same:
        print("  before only:", sorted(set(found["before"]) - set(found["after"])))
        print("  after only:", sorted(set(found["after"]) - set(found["before"])))
    result["same"] = same
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=2000, help="N (the second size is 10N)")
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--baseline", required=False, help="path of the audit.py to compare with (main's)")
    parser.add_argument("--checks", action="store_true", help="also time each check on its own at both sizes")
    parser.add_argument("--rss-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_only:
        rss_only(args.baseline)
        return
    if not args.baseline:
        raise SystemExit("--baseline PATH (main's payments/audit.py) is required: the figures are a comparison.")

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    if connection.vendor != "postgresql":
        raise SystemExit("Run this against PostgreSQL: DATABASE_URL=postgres://...")
    recreate_database()
    connection.close()
    call_command("migrate", verbosity=0)
    versions = {"before": load(args.baseline), "after": load(None)}

    started = time.perf_counter()
    build(0, args.customers)
    break_books()
    print(f"setup: {args.customers:,} customers in {time.perf_counter() - started:.1f}s")
    small = measure(f"N={args.customers:,}", versions, args.repeat, args.baseline)
    small_checks = time_checks(f"N={args.customers:,}", versions, args.repeat) if args.checks else None

    started = time.perf_counter()
    build(args.customers, args.customers * (args.scale - 1))
    big_n = args.customers * args.scale
    print(f"setup: {big_n - args.customers:,} more customers in {time.perf_counter() - started:.1f}s")
    big = measure(f"N={big_n:,}", versions, args.repeat, args.baseline)
    if small_checks is not None:
        big_checks = time_checks(f"N={big_n:,}", versions, args.repeat)
        for check_name in big_checks["after"]:
            growth = ", ".join(
                f"{name} {big_checks[name][check_name] / max(small_checks[name][check_name], 1e-6):.1f}x"
                for name in versions
                if check_name in big_checks[name]
            )
            print(f"check {check_name!r}: time at {big_n:,} / time at {args.customers:,}: {growth}")

    for name in versions:
        ratio = big[name]["rate"] / small[name]["rate"]
        print(
            f"{name}: rate at {big_n:,} / rate at {args.customers:,} = {ratio:.2f} (target >= 0.8); "
            f"tracemalloc peak {small[name]['peak'] / 2**20:.1f} -> {big[name]['peak'] / 2**20:.1f} MiB"
        )
    print(f"after / before at {big_n:,}: time {big['after']['best'] / big['before']['best']:.2f}")


if __name__ == "__main__":
    main()
