from __future__ import annotations

import os
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from billing_site.auth import hash_key
from billing_site.models import ApiKey
from billing_site.services import api_key_create

DEMO_USER = "admin"
DEMO_PASSWORD = "admin"
DEMO_KEY_NAME = "demo"


class Command(BaseCommand):
    help = "Local development only: create the demo admin user and the demo API key, and print both."

    def handle(self, *args, **options) -> None:  # type: ignore[no-untyped-def]
        if not settings.DEBUG:
            raise CommandError("bootstrap_demo creates well-known credentials; it runs only with DEBUG=true.")
        User = get_user_model()
        if not User.objects.filter(username=DEMO_USER).exists():
            User.objects.create_superuser(DEMO_USER, "admin@example.com", DEMO_PASSWORD)
        # The raw key is kept in var/ (git-ignored) so every `make run` prints the same working key.
        key_file = Path(settings.VAR_DIR) / "demo-api-key"
        raw = key_file.read_text().strip() if key_file.exists() else ""
        valid = bool(raw) and ApiKey.objects.filter(key_hash=hash_key(raw), revoked_at__isnull=True).exists()
        if not valid:
            _, raw = api_key_create(name=DEMO_KEY_NAME, scopes=["admin"])
            key_file.parent.mkdir(parents=True, exist_ok=True)
            key_file.write_text(raw + "\n")
            key_file.chmod(0o600)
        port = os.environ.get("PORT", "8000")  # what `make run PORT=...` serves on
        self.stdout.write(
            "\n"
            f"  Admin:    http://127.0.0.1:{port}/admin/   user '{DEMO_USER}', password '{DEMO_PASSWORD}'\n"
            f"  API key:  {raw}   (scope: admin)\n"
            f"  API docs: http://127.0.0.1:{port}/api/docs/\n"
            f"  Try:      curl -H 'Authorization: Bearer {raw}' http://127.0.0.1:{port}/api/v1/customers\n"
        )
