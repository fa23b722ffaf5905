"""TLS at the listener (HTTP.sys's SSL): contexts, SNI, the certificates in service, and
what a handshake tells the connection.

Theory of operation:

* Each https address (IP, port) has one *endpoint context*, given to `create_server`. It
  holds no certificate: its `sni_callback` picks the binding for the client's server name
  (a binding for that host, else a wildcard one, else one for any host), then the
  certificate (the central store's file for the name, or the binding's certificateHash),
  and swaps that certificate's own context into the handshake. A name with no certificate
  fails the handshake with an `unrecognized_name` alert.
* Every certificate has one context, built once per load (`certstore.load`); a renewal
  builds a new one and the store swaps it in, so the next handshake uses it and
  established connections carry on.
* Settings (`webLimits/@minTlsVersion`, Mozilla's "intermediate" ciphers, ALPN, client
  certificates from `<security><access sslFlags>`) are the same on every context:
  `make_context` is their one home.
* A handshake that fails (plain HTTP sent to a TLS port, an unknown name, no shared
  cipher, a client certificate refused) is seen by `_Handshake.do_handshake`, the endpoint
  context's SSLObject class, and written to the event log as `tls.handshake_failed` with
  the port and the reason, at most `FAILURE_EVENTS` per `FAILURE_WINDOW` seconds; the rest
  are counted and the count written once the window ends (no log flood).
  uvloop drops the connection on a failed handshake without sending what OpenSSL wrote,
  so the alert would never leave: when an alert is pending, `do_handshake` answers "want
  read" once (the loop sends it), and raises the failure at the next call (the client
  hangs up on the alert, or the handshake timeout ends the connection).
* ALPN: `ALPN_PROTOCOLS` is the one list every context advertises. The connection reads
  `ssl_object.selected_alpn_protocol()` in `connection_made` (`Session.alpn`) to pick the
  protocol that serves it (`negotiate.Chooser`: "h2" is HTTP/2).
"""

from __future__ import annotations

import os
import ssl
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from webgarden import SERVER_NAME
from webgarden.config.model import Binding, ServerConfig
from webgarden.config.webserver import AccessConfig
from webgarden.listener import certstore
from webgarden.listener.certstore import Certificate, CertificateError

#: Mozilla's "intermediate" profile (v5.7) for TLS 1.2; TLS 1.3 suites are OpenSSL's.
INTERMEDIATE_CIPHERS = ":".join((
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    "DHE-RSA-AES128-GCM-SHA256", "DHE-RSA-AES256-GCM-SHA384", "DHE-RSA-CHACHA20-POLY1305",
))
#: Protocols offered by ALPN, most preferred first: HTTP/2 (`http2.py`), as HTTP.sys
#: enables it on TLS by default, then HTTP/1.1.
ALPN_PROTOCOLS: tuple[str, ...] = ("h2", "http/1.1")
#: Handshake failures written to the event log per window, at most; then only counted.
FAILURE_EVENTS = 20
FAILURE_WINDOW = 60.0
DEFAULT_HTTPS_PORT = 443
_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


class TlsError(Exception):
    """An https binding that cannot be served at start. The message is one line."""


@dataclass(frozen=True, slots=True)
class Settings:
    min_version: str
    access: AccessConfig


def make_context(settings: Settings, certfile: str | None = None,
                 cls: type[ssl.SSLContext] = ssl.SSLContext) -> ssl.SSLContext:
    """A server context with webgarden's TLS settings, serving `certfile` if given."""
    ctx = cls(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = _VERSIONS[settings.min_version]
    ctx.set_ciphers(INTERMEDIATE_CIPHERS)
    ctx.options |= ssl.OP_NO_RENEGOTIATION | ssl.OP_NO_COMPRESSION
    ctx.set_alpn_protocols(list(ALPN_PROTOCOLS))
    if certfile is not None:
        ctx.load_cert_chain(certfile)
    mode = settings.access.client_cert
    if mode:
        ctx.verify_mode = ssl.CERT_REQUIRED if mode == "require" else ssl.CERT_OPTIONAL
        cafile = settings.access.client_certificate_authorities
        if cafile:
            ctx.load_verify_locations(cafile=cafile)
        else:
            ctx.load_default_certs(ssl.Purpose.CLIENT_AUTH)
    return ctx


@dataclass(frozen=True, slots=True)
class Session:
    """What a finished handshake tells the connection (and, for client certificates, the
    worker: the server's own claims)."""

    server_name: str | None  # the SNI name, lower case; None if the client sent none
    alpn: str | None
    client_cert: str | None  # PEM of the verified client certificate
    client_verify: str  # SSL_CLIENT_VERIFY: "SUCCESS" or "NONE"


def session_of(ssl_object: Any) -> Session:
    der = ssl_object.getpeercert(binary_form=True)
    pem = ssl.DER_cert_to_PEM_cert(der) if der else None
    return Session(getattr(ssl_object, "server_name", None),
                   ssl_object.selected_alpn_protocol(), pem,
                   "SUCCESS" if pem else "NONE")


class FailureLog:
    """Handshake failures to the event log, bounded per window."""

    def __init__(self, emit: Callable[..., None], clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self.emit = emit
        self.clock = clock
        self.window_end = 0.0
        self.written = 0
        self.suppressed = 0

    def failed(self, port: int, reason: str, **fields: Any) -> None:
        now = self.clock()
        if now >= self.window_end:
            if self.suppressed:
                self.emit("tls.handshake_failures_suppressed", count=self.suppressed,
                          seconds=FAILURE_WINDOW)
            self.window_end, self.written, self.suppressed = now + FAILURE_WINDOW, 0, 0
        if self.written >= FAILURE_EVENTS:
            self.suppressed += 1
            return
        self.written += 1
        self.emit("tls.handshake_failed", port=port, reason=reason, **fields)


def _reason(exc: ssl.SSLError) -> str:
    if exc.reason == "HTTP_REQUEST":
        return "plain HTTP sent to a TLS port"
    return exc.reason or type(exc).__name__


class _EndpointContext(ssl.SSLContext):
    """Each connection's SSLObject keeps its outgoing buffer, so that a failed handshake
    can still send its alert (`_Handshake`)."""

    def wrap_bio(self, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO,
                 server_side: bool = False, server_hostname: str | bytes | None = None,
                 session: ssl.SSLSession | None = None) -> ssl.SSLObject:
        obj = super().wrap_bio(incoming, outgoing, server_side, server_hostname, session)
        obj.outgoing = outgoing  # type: ignore[attr-defined]
        return obj


class Endpoint:
    """One https address: its context, and the choice of certificate by server name."""

    def __init__(self, store: CertStore, port: int, bindings: list[Binding]) -> None:
        self.store = store
        self.port = port
        self.bindings = bindings
        self.context = make_context(store.settings, cls=_EndpointContext)
        self.context.sni_callback = self._server_name
        endpoint = self

        class _Handshake(ssl.SSLObject):
            """The endpoint's SSLObject: sees the handshake's failure, and keeps the SNI
            name for the connection."""

            server_name: str | None = None
            reported = False
            outgoing: ssl.MemoryBIO
            failure: ssl.SSLError | None = None

            def do_handshake(self) -> None:
                if self.failure is not None:
                    raise self.failure
                try:
                    super().do_handshake()
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    raise
                except ssl.SSLError as exc:
                    if not self.reported:
                        endpoint.store.failures.failed(endpoint.port, _reason(exc))
                    if self.outgoing.pending:
                        # OpenSSL wrote an alert, which the loop would drop with the
                        # connection: "want read" makes it send what is pending first;
                        # the client closes on the alert, or the handshake timeout ends it.
                        self.failure = exc
                        raise ssl.SSLWantReadError() from exc
                    raise

        self.context.sslobject_class = _Handshake

    def configure(self, store: CertStore, bindings: list[Binding]) -> None:
        """A new configuration: its certificates and bindings for the next handshakes.
        The context stays (the socket's server holds it); its minimum version follows."""
        self.store = store
        self.bindings = bindings
        self.context.minimum_version = _VERSIONS[store.settings.min_version]

    def _server_name(self, sslobj: Any, name: str | None, _ctx: ssl.SSLContext) -> int | None:
        name = name.lower().rstrip(".") if name else None
        cert = self.certificate_for(name)
        if cert is None:
            sslobj.reported = True
            self.store.failures.failed(self.port, "no certificate for the server name",
                                       server_name=name or "-")
            return (ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME if name
                    else ssl.ALERT_DESCRIPTION_HANDSHAKE_FAILURE)
        sslobj.context = cert.context
        sslobj.server_name = name
        return None

    def certificate_for(self, name: str | None) -> Certificate | None:
        binding = self._binding_for(name)
        if binding is None:
            return None
        if binding.central_store:
            return self.store.central_for(name) if name else None
        return self.store.by_hash.get(_hash_key(binding))

    def _binding_for(self, name: str | None) -> Binding | None:
        wildcard = any_host = None
        for b in self.bindings:
            if not b.host:
                any_host = any_host or b
            elif name is not None and b.host == name:
                return b
            elif (name is not None and b.host.startswith("*.") and name.endswith(b.host[1:])
                  and "." not in name[:-len(b.host) + 1]):
                wildcard = wildcard or b
        return wildcard or any_host


def _hash_key(binding: Binding) -> tuple[str, str]:
    return (binding.certificate_store_name, binding.certificate_hash.upper().replace(" ", ""))


class CertStore:
    """The certificates in service: the central store's by host name, and the bindings'
    by thumbprint; loaded at start, reloaded when their files change (`reload`)."""

    def __init__(self, config: ServerConfig, emit: Callable[..., None]) -> None:
        self.emit = emit
        self.settings = Settings(config.limits.min_tls_version,
                                 config.web_server.security.access)
        self.failures = FailureLog(emit)
        central = config.central_certs
        self.central_dir = central.physical_path if central.enabled else ""
        self.central: dict[str, Certificate] = {}
        self.by_hash: dict[tuple[str, str], Certificate] = {}
        self.rejected: dict[str, str] = {}  # file -> why it is not served (the last try)
        self.hash_dirs = sorted({b.certificate_store_name for s in config.sites
                                 for b in s.bindings if b.https and not b.central_store})

    def make(self, certfile: str) -> ssl.SSLContext:
        return make_context(self.settings, certfile)

    # -- loading ----------------------------------------------------------------------

    def load_all(self, config: ServerConfig) -> None:
        """Load every certificate the configuration uses (TlsError: a binding's own
        certificate is missing; a bad central-store file is an event, its host unserved)."""
        if any(b.https and b.central_store for s in config.sites for b in s.bindings):
            try:
                files = certstore.pem_files(self.central_dir)
            except CertificateError as exc:
                raise TlsError(str(exc)) from None
            for path in files:
                self.reload(path)
        for directory in self.directories():
            self._check_directory(directory)
        for directory in self.hash_dirs:
            try:
                files = certstore.pem_files(directory)
            except CertificateError as exc:
                raise TlsError(str(exc)) from None
            for path in files:
                self.reload(path)
        for site in config.sites:
            for b in site.bindings:
                if b.https and not b.central_store and _hash_key(b) not in self.by_hash:
                    refused = "; ".join(reason for path, reason in self.rejected.items()
                                        if path.startswith(b.certificate_store_name + "/"))
                    raise TlsError(
                        f"site {site.name!r}: no certificate with thumbprint "
                        f"{b.certificate_hash} in {b.certificate_store_name} (a PEM file "
                        "of the chain, then the key, mode 600)"
                        + (f"; refused there: {refused}" if refused else ""))

    def _check_directory(self, directory: str) -> None:
        """Whoever can write a store chooses the certificates served: say so when others
        can (the files themselves are checked one by one)."""
        try:
            mode = os.stat(directory).st_mode
        except OSError:
            return
        if mode & 0o022 and not mode & stat.S_ISVTX:
            self.emit("tls.store_writable", directory=directory, mode=f"{mode & 0o777:04o}",
                      advice="only root should write a certificate store: chmod go-w")

    def reload(self, path: str) -> None:
        """(Re)load one file; on failure the previous certificate stays in service."""
        directory, filename = path.rsplit("/", 1)
        try:
            cert = certstore.load(path, self.make)
        except CertificateError as exc:
            self.rejected[path] = str(exc)
            self.emit("tls.certificate_rejected", file=path, reason=str(exc),
                      kept=self._serving(path))
            return
        self.rejected.pop(path, None)
        if directory == self.central_dir:
            host = certstore.host_of(filename)
            if host is not None:
                self.central[host] = cert
                if not certstore.covers(cert.names, host):
                    # Served as named, but clients will refuse it: say so now.
                    self.emit("tls.certificate_name_mismatch", file=path, host=host,
                              names=list(cert.names))
        if directory in self.hash_dirs:
            for key in [k for k, c in self.by_hash.items() if c.path == path]:
                del self.by_hash[key]  # renewed: a new thumbprint
            self.by_hash[(directory, cert.thumbprint)] = cert
        self.emit("tls.certificate_loaded", file=path, serial=f"{cert.serial:X}",
                  not_after=cert.not_after.strftime("%Y-%m-%dT%H:%M:%SZ"))
        self.check_expiry()

    def removed(self, path: str) -> None:
        self.rejected.pop(path, None)
        directory, filename = path.rsplit("/", 1)
        host = certstore.host_of(filename)
        if directory == self.central_dir and host in self.central:
            del self.central[host]
            self.emit("tls.certificate_removed", file=path)

    def _serving(self, path: str) -> bool:
        return any(c.path == path for c in self.certificates())

    def certificates(self) -> list[Certificate]:
        seen: dict[str, Certificate] = {}
        for cert in [*self.central.values(), *self.by_hash.values()]:
            seen.setdefault(cert.path, cert)
        return sorted(seen.values(), key=lambda c: c.path)

    def central_for(self, name: str) -> Certificate | None:
        cert = self.central.get(name)
        if cert is None and "." in name:
            cert = self.central.get("*." + name.split(".", 1)[1])
        return cert

    def check_expiry(self, now: datetime | None = None) -> None:
        now = now or datetime.now(UTC)
        for cert in self.certificates():
            days = cert.days_left(now)
            if days <= certstore.EXPIRY_WARNING_DAYS and not cert.warned:
                cert.warned = True
                self.emit("tls.certificate_expiring", file=cert.path, days_left=days,
                          not_after=cert.not_after.strftime("%Y-%m-%dT%H:%M:%SZ"))

    def rows(self) -> list[dict[str, Any]]:
        now = datetime.now(UTC)
        return [certstore.row(c, now) for c in self.certificates()]

    def directories(self) -> list[str]:
        return [d for d in (self.central_dir, *self.hash_dirs) if d]


# -- per request (dispatch.start) ---------------------------------------------------------

def misdirected(session: Session, host: str) -> bool:
    """A request whose Host is not the name its TLS connection was made for (421): the
    certificate, and the client-certificate policy, were chosen for that name."""
    return session.server_name is not None and host != session.server_name


def redirect_to_https(ex: Any, host: str, port: int) -> None:
    """`<hsts redirectHttpToHttps>`: 301 to the same URL on https."""
    authority = host if port == DEFAULT_HTTPS_PORT else f"{host}:{port}"
    location = f"https://{authority}{ex.target.decode('latin-1')}"
    framing = ex.frame(301, 0)
    conn = ex.conn
    conn.write(b"".join((b"HTTP/1.1 301 Moved Permanently\r\nServer: ", SERVER_NAME.encode(),
                         b"\r\nLocation: ", location.encode("latin-1"), b"\r\n", framing,
                         conn.date_line, b"\r\n")))
    ex.finish()
