"""A real identity provider for tests: keys generated here (cryptography), a JWKS and an OIDC discovery
document served over HTTP on 127.0.0.1 (an ephemeral port), and tokens signed for real with PyJWT.

Use it through the `oidc` fixture (root conftest.py), which also points the JWT settings at it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from rest_framework.test import APIClient

AUDIENCE = "billing-client-1"
_rsa_pool: list[rsa.RSAPrivateKey] = []


def _rsa_key(index: int) -> rsa.RSAPrivateKey:
    # 2048-bit RSA generation takes tens of milliseconds: generate a few per test session and reuse them.
    while len(_rsa_pool) <= index:
        _rsa_pool.append(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    return _rsa_pool[index]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


class IdentityProvider:
    """Keys by kid; `published` kids appear in the JWKS. `mode` makes the endpoints misbehave:
    "up", "error" (HTTP 500), "garbage" (200 with a body that is not JSON)."""

    def __init__(self) -> None:
        self.keys: dict[str, Any] = {}
        self.algorithms: dict[str, str] = {}
        self.published: list[str] = []
        self.requests: Counter[str] = Counter()
        self.mode = "up"
        self.discovery_issuer: str | None = None  # None: the real issuer
        self.discovery_jwks_uri: str | None = None  # None: our own JWKS
        self._rsa_used = 0
        self._server: ThreadingHTTPServer | None = None
        self.port = 0

    # --- HTTP ---------------------------------------------------------------------------------

    def start(self) -> IdentityProvider:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                provider.requests[self.path] += 1
                if provider.mode == "error":
                    self._send(500, b'{"message": "internal error"}')
                elif provider.mode == "garbage":
                    self._send(200, b"<html>maintenance</html>")
                elif self.path == "/jwks.json":
                    self._send(200, json.dumps(provider.jwks()).encode())
                elif self.path == "/pool/.well-known/openid-configuration":
                    self._send(200, json.dumps(provider.discovery_document()).encode())
                else:
                    self._send(404, b"{}")

            def _send(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return self

    def stop(self) -> None:
        """Take the endpoint down: from now on connections to it are refused."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def issuer(self) -> str:
        return f"{self.base_url}/pool"

    @property
    def jwks_url(self) -> str:
        return f"{self.base_url}/jwks.json"

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    def jwks_fetches(self) -> int:
        return self.requests["/jwks.json"]

    def discovery_document(self) -> dict[str, Any]:
        return {
            "issuer": self.discovery_issuer or self.issuer,
            "jwks_uri": self.discovery_jwks_uri or self.jwks_url,
            "token_endpoint": f"{self.base_url}/oauth2/token",
            "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        }

    # --- keys ---------------------------------------------------------------------------------

    def add_key(self, kind: str = "rsa", *, kid: str | None = None, publish: bool = True) -> str:
        if kind == "rsa":
            key: Any = _rsa_key(self._rsa_used)
            self._rsa_used += 1
            algorithm = "RS256"
        else:
            key = ec.generate_private_key(ec.SECP256R1())
            algorithm = "ES256"
        kid = kid or f"kid-{len(self.keys) + 1}"
        self.keys[kid] = key
        self.algorithms[kid] = algorithm
        if publish:
            self.published.append(kid)
        return kid

    def rotate(self) -> str:
        """Publish a new key and withdraw every old one, as a provider's key rotation does."""
        kid = self.add_key(publish=False)
        self.published = [kid]
        return kid

    def public_jwk(self, kid: str) -> dict[str, Any]:
        public = self.keys[kid].public_key()
        codec = RSAAlgorithm if self.algorithms[kid] == "RS256" else ECAlgorithm
        jwk = codec.to_jwk(public, as_dict=True)
        jwk.update({"kid": kid, "alg": self.algorithms[kid], "use": "sig"})
        return jwk

    def public_pem(self, kid: str) -> bytes:
        return (
            self.keys[kid]
            .public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.public_jwk(kid) for kid in self.published]}

    # --- tokens -------------------------------------------------------------------------------

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": AUDIENCE,
            "sub": "user-1",
            "iat": now,
            "exp": now + 3600,
            "scope": "admin",
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def token(self, *, kid: str | None = None, headers: dict[str, Any] | None = None, **claims: Any) -> str:
        """A token signed with the key `kid` (the first key by default). A claim set to None is left out."""
        kid = kid or next(iter(self.keys))
        return jwt.encode(
            self.claims(**claims),
            self.keys[kid],
            algorithm=self.algorithms[kid],
            headers={"kid": kid, **(headers or {})},
        )

    def unsigned_token(self, *, kid: str | None = None, **claims: Any) -> str:
        """`alg: none`: a header, a payload, and no signature."""
        header = {"alg": "none", "typ": "JWT", "kid": kid or next(iter(self.keys))}
        return f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(self.claims(**claims)).encode())}."

    def hs256_with_public_key(self, *, kid: str | None = None, **claims: Any) -> str:
        """The key-confusion attack: HMAC-SHA256 keyed with the public key's PEM, which anyone can read."""
        kid = kid or next(iter(self.keys))
        header = {"alg": "HS256", "typ": "JWT", "kid": kid}
        signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(self.claims(**claims)).encode())}"
        signature = hmac.new(self.public_pem(kid), signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{b64url(signature)}"

    def client(self, *, kid: str | None = None, **claims: Any) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {self.token(kid=kid, **claims)}")
        return client


def bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client
