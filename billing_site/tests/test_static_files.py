"""Static files in production: the app serves what `collectstatic` gathered (WhiteNoise), so admin, the
Swagger UI and the portal have their CSS and scripts behind gunicorn alone (DEBUG off)."""

from __future__ import annotations

from django.core.management import call_command
from django.test import Client


def test_collected_static_files_are_served_without_debug(settings, tmp_path):
    settings.DEBUG = False
    settings.STATIC_ROOT = tmp_path / "static"
    call_command("collectstatic", interactive=False, verbosity=0)
    client = Client()  # a new handler: WhiteNoise indexes STATIC_ROOT when the middleware is built

    response = client.get("/static/admin/css/base.css")
    assert response.status_code == 200
    assert b"body" in b"".join(response.streaming_content)
    assert client.get("/static/admin/css/no-such-file.css").status_code == 404
