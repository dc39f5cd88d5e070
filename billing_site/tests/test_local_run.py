"""`make run` writes nothing outside `var/`: the embedded (filesystem) broker keeps its queue, processed and
worker-control folders under VAR_DIR (kombu's default `control/` lands in the current directory)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import django
django.setup()
from billing_site.celery import app
# What a worker's remote control does (celery inspect/ping, shutdown): a broadcast through the broker.
app.control.broadcast("ping", reply=False)
with app.connection_for_write() as conn:
    conn.default_channel.basic_publish(conn.default_channel.prepare_message("x"), exchange="", routing_key="q")
"""


def test_the_filesystem_broker_writes_only_under_var(tmp_path):
    var = tmp_path / "var"
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "billing_site.settings",
        "DEBUG": "true",
        "VAR_DIR": str(var),
        "CELERY_BROKER_URL": "filesystem://",
        "PYTHONPATH": str(ROOT),
    }
    for name in ("DATABASE_URL", "REDIS_URL"):
        env.pop(name, None)
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert list(cwd.iterdir()) == []  # no control/ (or anything else) where the command ran
    assert any((var / "celery-broker" / "queue").iterdir())  # the message went to var/
    assert (var / "celery-broker" / "control").is_dir()


def test_make_run_takes_the_port():
    assert "PORT=$(PORT) bash bin/dev-run" in (ROOT / "Makefile").read_text()
    assert '"127.0.0.1:${PORT:-8000}"' in (ROOT / "bin" / "dev-run").read_text()
