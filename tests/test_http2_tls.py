"""HTTP/2 over TLS, chosen by ALPN ("h2"), on the https sites of `test_tls.py`: the same
certificates by SNI, the same 421 for a Host that is not the connection's name, HSTS."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess

import httpx
import pytest

from test_tls import _start


@pytest.fixture
def site(start_server, tmp_path):
    return _start(start_server, tmp_path)


def test_curl_http2_over_https_is_negotiated_by_alpn(site) -> None:
    done = site.curl("a.test", "/x", "--http2", "-w", "\n%{http_version}")
    body, _, version = done.stdout.rpartition("\n")
    assert version == "2", done.stderr
    seen = json.loads(body)
    assert seen["wsgi.url_scheme"] == "https" and seen["HTTPS"] == "on"
    assert seen["HTTP_HOST"] == f"a.test:{site.tls_port}"


def test_a_client_that_offers_only_http1_gets_http1(site) -> None:
    done = site.curl("a.test", "/x", "--http1.1", "-w", "\n%{http_version}")
    assert done.stdout.endswith("\n1.1")


def test_httpx_http2_over_https(site) -> None:
    context = ssl.create_default_context(cafile=str(site.ca.cert))
    with httpx.Client(verify=context, http2=True) as client:
        for _ in range(3):
            response = client.get(f"https://localhost:{site.tls_port}/")
            assert response.http_version == "HTTP/2"
            assert response.json()["wsgi.url_scheme"] == "https"


def test_a_stream_whose_host_is_not_the_connection_s_name_gets_421(site) -> None:
    done = site.curl("a.test", "/x", "-i", "--http2", "-H", "Host: b.test")
    assert done.stdout.startswith("HTTP/2 421"), done.stdout


@pytest.mark.skipif(shutil.which("h2load") is None, reason="h2load is not installed")
def test_h2load_over_tls_2000_requests_10_deep(site) -> None:
    out = subprocess.run(["h2load", "-n", "2000", "-c", "10", "-m", "10",
                          f"https://localhost:{site.tls_port}/x"],
                         capture_output=True, text=True, timeout=120)
    assert "Application protocol: h2" in out.stdout, out.stdout
    assert "status codes: 2000 2xx" in out.stdout, out.stdout
