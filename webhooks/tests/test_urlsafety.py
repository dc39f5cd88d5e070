"""SSRF refusals: endpoint URLs must reach public addresses only (unless explicitly allowed)."""

from __future__ import annotations

import socket
from unittest import mock

import pytest
from django.test import override_settings

from webhooks.sender import webhook_post
from webhooks.tests.helpers import local_server
from webhooks.urlsafety import UnsafeUrl, url_target

STRICT = override_settings(WEBHOOKS_ALLOW_PRIVATE_URLS=False, WEBHOOKS_ALLOW_HTTP=False, DEBUG=False)


@STRICT
@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("https://127.0.0.1/hook", "loopback"),
        ("https://127.1.2.3/hook", "loopback"),
        ("https://[::1]/hook", "loopback"),
        ("https://10.0.0.5/hook", "private"),
        ("https://172.16.3.4/hook", "private"),
        ("https://192.168.1.1/hook", "private"),
        ("https://[fd12:3456::1]/hook", "private"),
        ("https://100.64.0.1/hook", "private"),
        ("https://169.254.10.1/hook", "link-local"),
        ("https://[fe80::1]/hook", "link-local"),
        ("https://169.254.169.254/latest/meta-data/", "metadata"),
        ("https://[fd00:ec2::254]/", "metadata"),
        ("https://[::ffff:127.0.0.1]/hook", "loopback"),
        ("https://0.0.0.0/hook", "reserved"),
        ("https://224.0.0.1/hook", "reserved"),
    ],
)
def test_non_public_addresses_are_refused(url, why):
    with pytest.raises(UnsafeUrl) as exc:
        url_target(url)
    assert exc.value.code == "url_not_public"
    assert why in exc.value.message


@STRICT
def test_a_name_resolving_to_a_private_address_is_refused_even_beside_a_public_one():
    answers = [
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", 443)),
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.1.2.3", 443)),
    ]
    with mock.patch("webhooks.urlsafety.socket.getaddrinfo", return_value=answers), pytest.raises(UnsafeUrl) as exc:
        url_target("https://hooks.example.com/in")
    assert exc.value.code == "url_not_public"


@STRICT
def test_a_public_name_is_accepted_and_pinned_to_the_checked_address():
    answers = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", 443))]
    with mock.patch("webhooks.urlsafety.socket.getaddrinfo", return_value=answers):
        target = url_target("https://hooks.example.com:8443/in?x=1")
    assert (target.host, target.port, target.address, target.path) == (
        "hooks.example.com",
        8443,
        "93.184.215.14",
        "/in?x=1",
    )


@STRICT
@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("http://93.184.215.14/hook", "url_insecure"),
        ("ftp://93.184.215.14/hook", "url_invalid"),
        ("https://user:pass@93.184.215.14/hook", "url_invalid"),
        ("/relative", "url_invalid"),
        ("https://93.184.215.14:99999/", "url_invalid"),
        ("https://93.184.215.14/#frag", "url_invalid"),
    ],
)
def test_bad_urls_are_refused(url, code):
    with pytest.raises(UnsafeUrl) as exc:
        url_target(url)
    assert exc.value.code == code


@STRICT
def test_unresolvable_host_is_refused():
    with (
        mock.patch("webhooks.urlsafety.socket.getaddrinfo", side_effect=socket.gaierror("nope")),
        pytest.raises(UnsafeUrl) as exc,
    ):
        url_target("https://no-such-host.invalid/")
    assert exc.value.code == "url_unresolvable"


@override_settings(WEBHOOKS_ALLOW_PRIVATE_URLS=False, WEBHOOKS_ALLOW_HTTP=True, DEBUG=False)
def test_http_is_allowed_when_configured_but_addresses_are_still_checked():
    with pytest.raises(UnsafeUrl) as exc:
        url_target("http://127.0.0.1:8000/hook")
    assert exc.value.code == "url_not_public"


@override_settings(WEBHOOKS_ALLOW_PRIVATE_URLS=False, WEBHOOKS_ALLOW_HTTP=False, DEBUG=True)
def test_debug_allows_http():
    assert url_target("http://93.184.215.14/hook").scheme == "http"


def test_send_time_check_refuses_without_connecting():
    """A name that turned private after the endpoint was saved (DNS rebinding) is refused at send time."""
    with local_server() as server, override_settings(WEBHOOKS_ALLOW_PRIVATE_URLS=False):
        result = webhook_post(url=f"{server.url}/hook", body=b"{}", headers={}, timeout=1)
        assert server.requests == []
    assert result.status_code is None and result.error.startswith("refused:") and result.retryable
