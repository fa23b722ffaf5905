"""HTTPS end to end: real servers, real clients (curl, openssl s_client, httpx), and
certificates made by openssl in each test's own directory."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from harness import free_port
from tlscerts import CertAuthority, write_pem
from webgarden.listener import certstore, tls

CONFIG = """<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <system.applicationHost>
    <centralCertProvider enabled="true" physicalPath="{store}" />
    {limits}
    <applicationPools><add name="P" threads="4" startMode="AlwaysRunning" /></applicationPools>
    <sites>
      <site name="secure" id="1">
        <bindings>
          <binding protocol="https" bindingInformation="127.0.0.1:{tls_port}:" sslFlags="3" />
          <binding protocol="http" bindingInformation="127.0.0.1:{port}:" />
        </bindings>
        {hsts}
        <application path="/" applicationPool="P" app="tlsapp:{app}" />
      </site>
    </sites>
  </system.applicationHost>
  <system.webServer><security>{access}</security></system.webServer>
</configuration>
"""


class Site:
    def __init__(self, server, tmp: Path, ca: CertAuthority, store: Path, tls_port: int,
                 port: int) -> None:
        self.server, self.tmp, self.ca, self.store = server, tmp, ca, store
        self.tls_port, self.port = tls_port, port

    def curl(self, host: str, path: str = "/", *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["curl", "-sS", "--max-time", "20", "--cacert", str(self.ca.cert),
             "--resolve", f"{host}:{self.tls_port}:127.0.0.1", *args,
             f"https://{host}:{self.tls_port}{path}"],
            capture_output=True, text=True, timeout=30)

    def serial(self, name: str) -> int:
        """The serial of the certificate served for `name`, by openssl s_client."""
        shown = subprocess.run(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{self.tls_port}", "-servername",
             name, "-CAfile", str(self.ca.cert)],
            input="", capture_output=True, text=True, timeout=30)
        pem = re.search(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----",
                        shown.stdout, re.S)
        assert pem, shown.stdout + shown.stderr
        out = subprocess.run(["openssl", "x509", "-noout", "-serial"], input=pem.group(0),
                             capture_output=True, text=True, check=True)
        return int(out.stdout.strip().split("=")[1], 16)

    def install(self, filename: str, cert: bytes, key: bytes, mode: int = 0o600) -> int:
        """Write a store file as a deploy hook does; the index of the events before it."""
        mark = len(self.server.events())
        write_pem(self.store / filename, cert, key, mode)
        return mark

    def wait_file_event(self, kind: str, filename: str, after: int) -> dict:
        path = str(self.store / filename)
        return self.server.wait_event(
            lambda e: e["event"] == kind and e.get("file") == path, after=after)


def _start(start_server, tmp_path: Path, *, hsts: str = "", access: str = "",
           app: str = "application", limits: str = "") -> Site:
    ca = CertAuthority(tmp_path / "ca")
    store = tmp_path / "store"
    store.mkdir()
    for names, filename in ((["a.test"], "a.test.pem"), (["b.test"], "b.test.pem"),
                            (["localhost"], "localhost.pem"),
                            (["*.wild.test"], "_.wild.test.pem")):
        cert, key, _ = ca.leaf(names)
        write_pem(store / filename, cert, key)
    tls_port, port = free_port(), free_port()
    config = tmp_path / "applicationHost.config"
    config.write_text(CONFIG.format(store=store, tls_port=tls_port, port=port, hsts=hsts,
                                    access=access.format(ca=ca.cert), app=app,
                                    limits=limits))
    server = start_server("serve", "-c", str(config))
    return Site(server, tmp_path, ca, store, tls_port, port)


@pytest.fixture
def site(start_server, tmp_path) -> Site:
    return _start(start_server, tmp_path)


def test_each_host_gets_its_own_certificate_by_sni_and_the_app_sees_https(site) -> None:
    for host in ("a.test", "b.test", "deep.wild.test"):
        done = site.curl(host, "/x")
        assert done.returncode == 0, done.stderr
        seen = json.loads(done.stdout)
        assert seen["wsgi.url_scheme"] == "https" and seen["HTTPS"] == "on"
        assert seen["SSL_CLIENT_VERIFY"] == "NONE" and seen["SSL_CLIENT_CERT"] is None
    assert site.serial("a.test") != site.serial("b.test")
    assert site.serial("x.wild.test") == site.serial("y.wild.test")


def test_httpx_speaks_https_to_it(site) -> None:
    context = ssl.create_default_context(cafile=str(site.ca.cert))
    with httpx.Client(verify=context) as client:
        for _ in range(3):  # one connection, kept alive
            response = client.get(f"https://localhost:{site.tls_port}/")
            assert response.status_code == 200
            assert response.json()["wsgi.url_scheme"] == "https"


def test_a_host_other_than_the_connection_s_sni_name_gets_421(site) -> None:
    done = site.curl("a.test", "/x", "-i", "--http1.1", "-H", "Host: b.test")
    assert done.stdout.startswith("HTTP/1.1 421 Misdirected Request"), done.stdout
    site.server.wait_event(lambda e: e["event"] == "httperr" and e["status"] == 421)
    assert site.curl("a.test", "/x", "-H", "Host: A.TEST").returncode == 0  # any case


def test_a_name_without_a_certificate_fails_with_an_alert_and_is_logged(site) -> None:
    done = site.curl("nowhere.test")
    assert done.returncode != 0 and "unrecognized name" in done.stderr, done.stderr
    event = site.server.wait_event(lambda e: e["event"] == "tls.handshake_failed"
                                   and e.get("server_name") == "nowhere.test")
    assert event["port"] == site.tls_port
    assert site.curl("a.test").returncode == 0  # nothing else is disturbed


def test_plain_http_sent_to_the_tls_port_is_closed_and_logged(site) -> None:
    with socket.create_connection(("127.0.0.1", site.tls_port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        assert sock.recv(4096) == b""  # closed, no answer
    event = site.server.wait_event(lambda e: e["event"] == "tls.handshake_failed")
    assert event["reason"] == "plain HTTP sent to a TLS port"


def test_a_renewed_file_serves_the_next_handshake_and_open_connections_carry_on(site
                                                                                ) -> None:
    before = site.serial("a.test")
    context = ssl.create_default_context(cafile=str(site.ca.cert))
    raw = socket.create_connection(("127.0.0.1", site.tls_port), timeout=10)
    with context.wrap_socket(raw, server_hostname="a.test") as conn:
        cert, key, serial = site.ca.leaf(["a.test"])
        mark = site.install("a.test.pem", cert, key)
        event = site.wait_file_event("tls.certificate_loaded", "a.test.pem", mark)
        assert int(event["serial"], 16) == serial != before
        conn.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")  # the old session still works
        assert conn.recv(4096).startswith(b"HTTP/1.1 200 OK")
    assert site.serial("a.test") == serial


def test_a_broken_renewal_keeps_the_previous_certificate_with_an_event(site) -> None:
    serving = site.serial("a.test")
    cert, _, _ = site.ca.leaf(["a.test"])
    _, other_key, _ = site.ca.leaf(["a.test"])
    mark = site.install("a.test.pem", cert, other_key)  # a key that does not fit
    event = site.wait_file_event("tls.certificate_rejected", "a.test.pem", mark)
    assert "does not fit" in event["reason"] and event["kept"] is True
    expired, key, _ = site.ca.expired(["a.test"])
    mark = site.install("a.test.pem", expired, key)
    event = site.wait_file_event("tls.certificate_rejected", "a.test.pem", mark)
    assert "expired" in event["reason"]
    assert site.serial("a.test") == serving


def test_a_key_that_others_can_read_is_refused_with_a_clear_error(site) -> None:
    serving = site.serial("b.test")
    cert, key, _ = site.ca.leaf(["b.test"])
    mark = site.install("b.test.pem", cert, key, mode=0o644)
    event = site.wait_file_event("tls.certificate_rejected", "b.test.pem", mark)
    assert "readable by others (mode 0644)" in event["reason"] and "chmod 600" in event["reason"]
    assert site.serial("b.test") == serving
    os.chmod(site.store / "b.test.pem", 0o600)  # fixed: loaded on the attribute change
    site.wait_file_event("tls.certificate_loaded", "b.test.pem", mark)
    assert site.serial("b.test") != serving


def test_a_certificate_that_expires_within_14_days_is_announced_and_listed(site) -> None:
    cert, key, serial = site.ca.leaf(["soon.test"], days=10)
    mark = site.install("soon.test.pem", cert, key)
    event = site.wait_file_event("tls.certificate_expiring", "soon.test.pem", mark)
    assert event["days_left"] in (9, 10)
    listed = site.server.admin("list", "certs")
    assert listed.returncode == 0, listed.stderr
    line = next(ln for ln in listed.stdout.splitlines() if "soon.test.pem" in ln)
    assert "soon.test" in line and f"{serial:X}" in line and re.search(r"\b(9|10)\b", line)
    assert "a.test.pem" in listed.stdout and "_.wild.test.pem" in listed.stdout


def test_hsts_on_https_answers_and_plain_http_redirected(start_server, tmp_path) -> None:
    site = _start(start_server, tmp_path, hsts='<hsts enabled="true" max-age="31536000" '
                  'includeSubDomains="true" redirectHttpToHttps="true" />')
    done = site.curl("a.test", "/x", "-i", "--http1.1")
    assert "Strict-Transport-Security: max-age=31536000; includeSubDomains\n" in done.stdout
    done = site.curl("a.test", "/x", "-i", "--http2")  # ALPN h2: the same field, lower case
    assert done.stdout.startswith("HTTP/2 200")
    assert "strict-transport-security: max-age=31536000; includeSubDomains\n" in done.stdout
    response = httpx.get(f"http://127.0.0.1:{site.port}/p?q=1", headers={"Host": "a.test"})
    assert response.status_code == 301
    assert response.headers["location"] == f"https://a.test:{site.tls_port}/p?q=1"
    assert "strict-transport-security" not in response.headers  # never over plain http


CLIENT_CERTS = ('<access sslFlags="Ssl, SslNegotiateCert{require}" '
                'clientCertificateAuthorities="{{ca}}" />')


def _client_cert(site: Site) -> tuple[str, str, str]:
    cert, key, _ = site.ca.leaf(["client.test"], client=True)
    (site.tmp / "client.pem").write_bytes(cert)
    (site.tmp / "client.key").write_bytes(key)
    return str(site.tmp / "client.pem"), str(site.tmp / "client.key"), cert.decode()


def test_a_required_client_certificate_reaches_the_app(start_server, tmp_path) -> None:
    site = _start(start_server, tmp_path,
                  access=CLIENT_CERTS.format(require=", SslRequireCert"))
    assert site.curl("a.test").returncode != 0  # no certificate: no handshake
    cert_file, key_file, pem = _client_cert(site)
    done = site.curl("a.test", "/", "--cert", cert_file, "--key", key_file)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["SSL_CLIENT_VERIFY"] == "SUCCESS"
    assert seen["SSL_CLIENT_CERT"].strip() == pem.strip()
    refused = httpx.get(f"http://127.0.0.1:{site.port}/", headers={"Host": "a.test"})
    assert refused.status_code == 403 and "403.4" in refused.text  # sslFlags Ssl


def test_an_optional_client_certificate_reaches_an_asgi_app(start_server, tmp_path) -> None:
    site = _start(start_server, tmp_path, access=CLIENT_CERTS.format(require=""), app="asgi")
    without = site.curl("a.test")
    assert without.returncode == 0, without.stderr
    assert json.loads(without.stdout)["SSL_CLIENT_VERIFY"] == "NONE"
    cert_file, key_file, pem = _client_cert(site)
    seen = json.loads(site.curl("a.test", "/", "--cert", cert_file, "--key", key_file).stdout)
    assert seen["scheme"] == "https" and seen["SSL_CLIENT_VERIFY"] == "SUCCESS"
    assert seen["client_cert_chain"][0].strip() == pem.strip()


HASH_CONFIG = """<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <system.applicationHost>
    <applicationPools><add name="P" threads="2" startMode="AlwaysRunning" /></applicationPools>
    <sites>
      <site name="own" id="1">
        <bindings><binding protocol="https" bindingInformation="127.0.0.1:{port}:"
            certificateHash="{thumbprint}" certificateStoreName="{store}" /></bindings>
        <application path="/" applicationPool="P" app="tlsapp:application" />
      </site>
    </sites>
  </system.applicationHost>
</configuration>
"""


def test_a_binding_names_its_certificate_by_thumbprint_in_a_store_directory(
        start_server, tmp_path) -> None:
    ca = CertAuthority(tmp_path / "ca")
    store = tmp_path / "My"
    store.mkdir()
    for name in ("one.test", "two.test"):
        cert, key, _ = ca.leaf([name])
        write_pem(store / f"{name}.pem", cert, key)
    fingerprint = subprocess.run(
        ["openssl", "x509", "-noout", "-fingerprint", "-sha1", "-in", str(store / "two.test.pem")],
        capture_output=True, text=True, check=True).stdout
    thumbprint = fingerprint.strip().split("=")[1].replace(":", "")
    port = free_port()
    config = tmp_path / "applicationHost.config"
    config.write_text(HASH_CONFIG.format(port=port, thumbprint=thumbprint.lower(), store=store))
    start_server("serve", "-c", str(config))
    done = subprocess.run(
        ["curl", "-sS", "--cacert", str(ca.cert), "--resolve", f"two.test:{port}:127.0.0.1",
         f"https://two.test:{port}/"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr  # the thumbprint's certificate, with or without SNI
    assert json.loads(done.stdout)["wsgi.url_scheme"] == "https"


def test_a_thumbprint_that_no_file_has_stops_the_start_with_one_line(tmp_path) -> None:
    store = tmp_path / "My"
    store.mkdir()
    config = tmp_path / "applicationHost.config"
    config.write_text(HASH_CONFIG.format(port=free_port(), thumbprint="AB" * 20, store=store))
    done = subprocess.run([sys.executable, "-m", "webgarden", "serve", "-c", str(config)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert f"no certificate with thumbprint {'AB' * 20}" in done.stderr
    ca = CertAuthority(tmp_path / "ca")
    cert, key, _ = ca.leaf(["one.test"])
    write_pem(store / "one.test.pem", cert, key, mode=0o640)  # group-readable: refused
    done = subprocess.run([sys.executable, "-m", "webgarden", "serve", "-c", str(config)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "refused there: " in done.stderr and "one.test.pem: its private key is readable" \
        in done.stderr, done.stderr


def test_handshake_failures_are_logged_at_most_a_bounded_number_per_window() -> None:
    now = [0.0]
    events: list[tuple[str, dict]] = []
    log = tls.FailureLog(lambda event, **f: events.append((event, f)), lambda: now[0])
    for _ in range(tls.FAILURE_EVENTS + 50):
        log.failed(443, "plain HTTP sent to a TLS port")
    assert len(events) == tls.FAILURE_EVENTS
    now[0] = tls.FAILURE_WINDOW + 1
    log.failed(443, "no certificate for the server name")
    assert events[-2] == ("tls.handshake_failures_suppressed",
                          {"count": 50, "seconds": tls.FAILURE_WINDOW})
    assert events[-1][1]["reason"] == "no certificate for the server name"


def test_a_store_file_whose_certificate_does_not_name_its_host_is_said(site) -> None:
    cert, key, _ = site.ca.leaf(["other.test"])
    mark = site.install("c.test.pem", cert, key)
    event = site.wait_file_event("tls.certificate_name_mismatch", "c.test.pem", mark)
    assert event["host"] == "c.test" and event["names"] == ["other.test"]


def test_central_store_file_names_are_host_names() -> None:
    assert certstore.host_of("www.example.com.pem") == "www.example.com"
    assert certstore.host_of("_.example.com.pem") == "*.example.com"
    assert certstore.host_of("WWW.Example.COM.PEM") == "www.example.com"
    assert certstore.host_of("notes.txt") is None
    assert certstore.covers(("a.example.com",), "a.example.com")
    assert certstore.covers(("*.example.com",), "a.example.com")
    assert not certstore.covers(("*.example.com",), "a.b.example.com")
    assert certstore.covers(("*.example.com",), "*.example.com")
    assert not certstore.covers(("a.example.com",), "*.example.com")


def test_websockets_work_over_tls(start_server, tmp_path) -> None:
    from websockets.sync.client import connect

    site = _start(start_server, tmp_path)
    config = tmp_path / "applicationHost.config"
    config.write_text(config.read_text().replace("tlsapp:application", "wsapp:app"))
    mark = len(site.server.events())
    site.server.signal(signal.SIGHUP)
    site.server.wait_event(lambda e: e["event"] == "config.applied", after=mark)
    context = ssl.create_default_context(cafile=str(site.ca.cert))
    with connect(f"wss://localhost:{site.tls_port}/scope", ssl=context) as ws:
        scope = json.loads(ws.recv(timeout=30))
        assert scope["scheme"] == "wss"
        ws.send("over tls")
        assert ws.recv(timeout=30) == "over tls"


def test_a_client_cannot_forge_the_client_certificate_fields_with_headers(site) -> None:
    done = site.curl("a.test", "/", "-H", "Ssl-Client-Cert: forged", "-H",
                     "Ssl-Client-Verify: SUCCESS", "-H", "X-Forwarded-Proto: http")
    seen = json.loads(done.stdout)
    assert seen["SSL_CLIENT_CERT"] is None and seen["SSL_CLIENT_VERIFY"] == "NONE"
    assert seen["wsgi.url_scheme"] == "https"
    plain = httpx.get(f"http://127.0.0.1:{site.port}/", headers={
        "Host": "a.test", "Ssl-Client-Verify": "SUCCESS"}).json()
    assert plain["SSL_CLIENT_VERIFY"] is None and plain["wsgi.url_scheme"] == "http"


def test_tls_1_2_is_the_default_minimum_and_the_minimum_is_a_setting(start_server,
                                                                     tmp_path) -> None:
    site = _start(start_server, tmp_path)
    assert site.curl("a.test", "/", "--tls-max", "1.2").returncode == 0
    assert site.curl("a.test", "/", "--tls-max", "1.1").returncode != 0  # no TLS 1.1
    config = tmp_path / "applicationHost.config"
    config.write_text(config.read_text().replace(
        '<applicationPools>', '<webLimits minTlsVersion="1.3" /><applicationPools>', 1))
    mark = len(site.server.events())
    site.server.signal(signal.SIGHUP)
    site.server.wait_event(lambda e: e["event"] == "config.applied", after=mark)
    assert site.curl("a.test", "/", "--tls-max", "1.2").returncode != 0  # applied on reload
    assert site.curl("a.test", "/").returncode == 0


def test_ssl_flags_bits_that_are_not_enforced_are_named_at_load(tmp_path) -> None:
    from webgarden.config import loads

    text = CONFIG.format(store=tmp_path, tls_port=8443, port=8080, hsts="", access="",
                         app="application", limits="")
    assert not [u for u in loads(text).unsupported if u.attribute == "sslFlags"]
    named = loads(text.replace('sslFlags="3"', 'sslFlags="35"')).unsupported
    assert [u.value for u in named if u.attribute == "sslFlags"] == ["35"]
    no_http2 = loads(text.replace('sslFlags="3"', 'sslFlags="7"')).unsupported  # 4: no h2
    assert [u.value for u in no_http2 if u.attribute == "sslFlags"] == ["7"]


def test_no_key_reaches_a_worker_neither_descriptor_nor_path(site) -> None:
    done = site.curl("a.test", "/descriptors")
    seen = json.loads(done.stdout)
    everything = json.dumps(seen)
    assert str(site.store) not in everything  # no path of the store, anywhere
    assert "webgarden-cert" not in everything  # no memfd a key was loaded from
    assert "PRIVATE KEY" not in everything
    assert all(fd.startswith(("/dev/null", "socket:", "pipe:")) or fd.endswith(".log")
               for fd in seen["fds"]), seen["fds"]  # its sockets, pipes and stderr only


def test_a_port_cannot_turn_from_https_to_http_by_a_reload(site) -> None:
    config = site.tmp / "applicationHost.config"
    text = config.read_text()
    config.write_text(text.replace('protocol="https"', 'protocol="http"').replace(
        ' sslFlags="3"', ""))
    mark = len(site.server.events())
    site.server.signal(signal.SIGHUP)
    event = site.server.wait_event(lambda e: e["event"] == "config.rejected", after=mark)
    assert "cannot change between http and https" in event["error"]
    assert site.curl("a.test").returncode == 0  # still https, as before


def test_a_client_without_sni_gets_a_handshake_failure_from_a_central_store_binding(site
                                                                                     ) -> None:
    done = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{site.tls_port}",
                           "-noservername"], input="", capture_output=True, text=True,
                          timeout=30)
    assert "handshake failure" in done.stderr or "alert" in done.stderr, done.stderr
    site.server.wait_event(lambda e: e["event"] == "tls.handshake_failed"
                           and e.get("server_name") == "-")
