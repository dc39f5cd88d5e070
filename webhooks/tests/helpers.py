"""Test helpers: a scripted local HTTP server (webhook receiver, fake Stripe API) and Stripe's own example
objects from `../shared/stripe/fixtures3.json`, signed for real."""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import stripe
from django.conf import settings

FIXTURES = Path(settings.BASE_DIR).parent / "shared" / "stripe" / "fixtures3.json"
STRIPE_SECRET = "whsec_test_0123456789abcdefghijklmnopqrstuv"


@cache
def _fixtures() -> dict[str, Any]:
    if not FIXTURES.exists():
        raise RuntimeError(f"Stripe's fixtures are expected at {FIXTURES} (the shared folder beside the project)")
    return json.loads(FIXTURES.read_text())["resources"]


def stripe_fixture(resource: str, **overrides: Any) -> dict[str, Any]:
    """A copy of Stripe's example object for `resource`, with some fields overridden."""
    obj = copy.deepcopy(_fixtures()[resource])
    obj.update(overrides)
    return obj


def stripe_event(event_type: str, obj: dict[str, Any], *, event_id: str, created: int | None = None) -> dict[str, Any]:
    """Stripe's example `event` carrying `obj`, as Stripe would post it."""
    return stripe_fixture(
        "event",
        id=event_id,
        type=event_type,
        created=int(time.time()) if created is None else created,
        data={"object": obj},
        api_version="2025-09-30.clover",
    )


def stripe_signature(body: str, *, secret: str = STRIPE_SECRET, timestamp: int | None = None) -> str:
    """The Stripe-Signature header, computed by the SDK's own signer."""
    return stripe.WebhookSignature.generate_signature_header(body, secret, timestamp=timestamp)


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Reply:
    status: int = 200
    body: bytes = b"ok"
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


class LocalServer:
    """A threaded HTTP server on 127.0.0.1 (ephemeral port). Replies come from `script` in order (the last
    one repeats), or from `responder(received) -> Reply` when set."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.script: list[Reply] = [Reply()]
        self.responder: Callable[[Received], Reply] | None = None
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                received = Received(
                    method=self.command,
                    path=self.path,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=self.rfile.read(length) if length else b"",
                )
                with server._lock:
                    server.requests.append(received)
                    if server.responder is not None:
                        reply = server.responder(received)
                    else:
                        reply = server.script.pop(0) if len(server.script) > 1 else server.script[0]
                if reply.delay:
                    time.sleep(reply.delay)
                try:
                    self.send_response(reply.status)
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

            do_POST = _handle
            do_GET = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> LocalServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@contextmanager
def local_server() -> Iterator[LocalServer]:
    with LocalServer() as server:
        yield server


def fake_stripe_events(events: list[dict[str, Any]]) -> Callable[[Received], Reply]:
    """A responder for `GET /v1/events` over `events` (newest first, as Stripe lists them), honouring
    `created[gte]`, `limit` and `starting_after`."""

    def respond(received: Received) -> Reply:
        parts = urlsplit(received.path)
        if parts.path != "/v1/events" or received.method != "GET":
            return Reply(404, json.dumps({"error": {"type": "invalid_request_error", "message": "no"}}).encode())
        query = parse_qs(parts.query)
        gte = int(query.get("created[gte]", ["0"])[0])
        limit = int(query.get("limit", ["10"])[0])
        chosen = sorted((e for e in events if e["created"] >= gte), key=lambda e: (-e["created"], e["id"]))
        if "starting_after" in query:
            ids = [e["id"] for e in chosen]
            chosen = chosen[ids.index(query["starting_after"][0]) + 1 :]
        page = chosen[:limit]
        body = {"object": "list", "url": "/v1/events", "has_more": len(chosen) > limit, "data": page}
        return Reply(200, json.dumps(body).encode(), headers={"Content-Type": "application/json"})

    return respond
