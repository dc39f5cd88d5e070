from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from billing_site.errors import ApiError
from billing_site.models import SCOPES
from billing_site.services import api_key_create


class Command(BaseCommand):
    help = "Create an API key and print it once (only its hash is stored)."

    def add_arguments(self, parser) -> None:  # type: ignore[no-untyped-def]
        parser.add_argument("--name", required=True)
        parser.add_argument("--scopes", required=True, help=f"comma-separated: {', '.join(SCOPES)}")

    def handle(self, *args, **options) -> None:  # type: ignore[no-untyped-def]
        try:
            key, raw = api_key_create(name=options["name"], scopes=options["scopes"].split(","))
        except ApiError as exc:
            raise CommandError(exc.message) from None
        self.stderr.write(
            f"Created {key.id} '{key.name}' with scopes {', '.join(key.scopes)}. "
            "Store the key now; it cannot be shown again:"
        )
        self.stdout.write(raw)
