"""One HTTP POST of a webhook: no redirects, a connect and a read timeout, the first 4 KiB of the answer.

Runs outside any database transaction. The connection goes to the address `urlsafety.url_target` checked,
with the URL's host name in the Host header and in TLS (SNI and certificate check), so a DNS answer that
changes between the check and the connect cannot redirect it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import certifi
import urllib3
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import NewConnectionError
from urllib3.exceptions import TimeoutError as Urllib3Timeout

from webhooks.urlsafety import Target, UnsafeUrl, url_target

RESPONSE_BODY_LIMIT = 4096
USER_AGENT = "billing-webhooks/1"


@dataclass(frozen=True)
class SendResult:
    status_code: int | None
    body: str
    error: str
    duration_ms: int

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def retryable(self) -> bool:
        """Timeouts, connection errors, 408, 429 and 5xx are worth another try; any other 4xx, and a 3xx
        we will not follow, would get the same answer again."""
        if self.succeeded:
            return False
        if self.status_code is None:
            return True
        return self.status_code in (408, 429) or self.status_code >= 500


def _pool(target: Target, timeout: float) -> urllib3.HTTPConnectionPool:
    timeouts = urllib3.Timeout(connect=timeout, read=timeout)
    if target.scheme == "https":
        return urllib3.HTTPSConnectionPool(
            target.address,
            target.port,
            timeout=timeouts,
            retries=False,
            maxsize=1,
            cert_reqs="CERT_REQUIRED",
            ca_certs=certifi.where(),
            server_hostname=target.host,
            assert_hostname=target.host,
        )
    return urllib3.HTTPConnectionPool(target.address, target.port, timeout=timeouts, retries=False, maxsize=1)


def _host_header(target: Target) -> str:
    host = f"[{target.host}]" if ":" in target.host else target.host
    default = 443 if target.scheme == "https" else 80
    return host if target.port == default else f"{host}:{target.port}"


def webhook_post(*, url: str, body: bytes, headers: dict[str, str], timeout: float) -> SendResult:
    """POST `body` to `url`. Never raises for anything the network or the endpoint does."""
    started = time.perf_counter()

    def elapsed() -> int:
        return int((time.perf_counter() - started) * 1000)

    try:
        target = url_target(url)
    except UnsafeUrl as exc:
        return SendResult(status_code=None, body="", error=f"refused: {exc.message}", duration_ms=elapsed())
    pool = _pool(target, timeout)
    request_headers = {
        **headers,
        "Host": _host_header(target),
        "User-Agent": USER_AGENT,
        "Content-Type": "application/json",
    }
    try:
        response = pool.urlopen(
            "POST",
            target.path,
            body=body,
            headers=request_headers,
            redirect=False,
            retries=False,
            preload_content=False,
            assert_same_host=False,
        )
        try:
            # The read timeout bounds each read; the deadline bounds a server that trickles bytes.
            deadline = started + 2 * timeout
            chunks: list[bytes] = []
            size = 0
            while size < RESPONSE_BODY_LIMIT and time.perf_counter() < deadline:
                chunk = response.read(min(1024, RESPONSE_BODY_LIMIT - size))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
            text = b"".join(chunks)[:RESPONSE_BODY_LIMIT].decode("utf-8", errors="replace")
            status = response.status
        finally:
            # Never read the rest of a large body: the connection is closed with what is left in it.
            response.close()
    except NewConnectionError:  # a subclass of the timeout error in urllib3, but a refusal is not a timeout
        return SendResult(status_code=None, body="", error="connection error: refused", duration_ms=elapsed())
    except Urllib3Timeout:
        return SendResult(status_code=None, body="", error=f"timeout after {timeout:g}s", duration_ms=elapsed())
    except (Urllib3Error, OSError) as exc:
        return SendResult(
            status_code=None, body="", error=f"connection error: {type(exc).__name__}", duration_ms=elapsed()
        )
    finally:
        pool.close()
    error = ""
    if 300 <= status < 400:
        location = response.headers.get("Location", "")
        error = f"redirect not followed (Location: {location[:200]})"
    elif not 200 <= status < 300:
        error = f"HTTP {status}"
    return SendResult(status_code=status, body=text, error=error, duration_ms=elapsed())
