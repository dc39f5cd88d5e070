"""The app layout holds: imports point down the list of apps, tests included, and each app has its rooms.

    billing_site (core) <- webhooks <- customers <- metering <- catalog <- invoicing <- subscriptions <- payments
        <- portal

A module may import from its own app and from apps below it, never from one above. Every import counts
(top of module, inside a function, under TYPE_CHECKING), because an import inside a function is still a
dependency: it only hides the cycle until run time.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ORDER = [
    "billing_site",
    "webhooks",
    "customers",
    "metering",
    "catalog",
    "invoicing",
    "subscriptions",
    "payments",
    "portal",
]
RANK = {app: index for index, app in enumerate(ORDER)}


def _modules() -> list[Path]:
    return sorted(
        path
        for app in ORDER
        for path in (ROOT / app).rglob("*.py")
        if "migrations" not in path.parts and ".venv" not in path.parts
    )


def _imported_apps(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top in RANK:
                found.append((node.lineno, name))
    return found


def upward_imports() -> list[str]:
    problems = []
    for path in _modules():
        app = path.relative_to(ROOT).parts[0]
        for line, name in _imported_apps(path):
            target = name.split(".")[0]
            if RANK[target] > RANK[app]:
                problems.append(f"{path.relative_to(ROOT)}:{line} imports {name} ({app} is below {target})")
    return problems


def test_no_module_imports_an_app_above_its_own():
    assert upward_imports() == []


def test_the_check_sees_an_upward_import(tmp_path, monkeypatch):
    # The checker itself must be able to fail: a module of invoicing that imports payments is reported.
    module = tmp_path / "invoicing" / "bad.py"
    module.parent.mkdir()
    module.write_text("def f():\n    from payments.services import ledger\n")
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    monkeypatch.setattr(f"{__name__}._modules", lambda: [module])
    assert upward_imports() == ["invoicing/bad.py:2 imports payments.services (invoicing is below payments)"]


@pytest.mark.parametrize("app", ORDER[1:])
def test_every_app_is_installed_in_import_order(app, settings):
    ours = [entry.split(".")[0] for entry in settings.INSTALLED_APPS if entry.split(".")[0] in RANK]
    assert ours == ORDER
    assert (ROOT / app / "models.py").exists()


def test_payments_has_no_import_cycle():
    """Inside payments, a module imports only modules that do not import it back (directly or not)."""
    package = ROOT / "payments"
    graph: dict[str, set[str]] = {}
    for path in package.rglob("*.py"):
        if "migrations" in path.parts or "tests" in path.parts:
            continue
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        graph[name] = {target for _, target in _imported_apps(path) if target.startswith("payments")}
    for name in graph:
        graph[name] = {t for t in graph[name] if t in graph and t != name}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        nexts = graph.get(start, ())
        return any(nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})) for nxt in nexts)

    cycles = sorted(name for name in graph if reaches(name, name, {name}))
    assert cycles == []
