"""Certificates and their keys: loaded from PEM files, checked, watched, renewed in place.

Two sources, as IIS has them:

* the central certificate store (IIS 8): `<centralCertProvider physicalPath=DIR>`, one
  `<host>.pem` per host name, `_.example.com.pem` for `*.example.com`;
* a binding's own certificate: `certificateHash` (the SHA-1 thumbprint of the leaf) found
  among the PEM files of the directory `certificateStoreName`.

Each file holds the certificate chain (leaf first), then the private key. Rules:

* A file is read once, through one descriptor (`O_NOFOLLOW`), and those same bytes are what
  OpenSSL loads (from a memfd): what was checked is what is served.
* A key file that its group or others may read is refused, as sshd refuses one: the error
  names the file and its mode.
* A certificate that has expired, is not yet valid, or whose key does not fit it, is
  refused. When the file was serving already (a renewal), the previous certificate stays in
  service and `tls.certificate_rejected` names the file and why.
* Each certificate gets its own `ssl.SSLContext`, built once per load (`tls.host_context`);
  a renewal swaps the context in the store, so the next handshake uses it while
  established connections carry on with theirs.
* Keys stay in the server process: no descriptor, path or byte of them reaches a worker
  (workers are spawned with only their own sockets, `ipc/spawn.py`).
* `tls.certificate_expiring` is written once per certificate (per load) when it has
  `EXPIRY_WARNING_DAYS` or fewer left; `check_expiry` runs at load and then hourly.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import ssl
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography import x509

#: Days before expiry at which `tls.certificate_expiring` is written.
EXPIRY_WARNING_DAYS = 14
#: Largest certificate file read, bytes (a chain and a key are a few KB).
MAX_PEM_BYTES = 1 << 20
#: PEM files read from one store directory at most.
MAX_STORE_FILES = 10000

_CERT_BLOCK = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----\s*", re.S)
_KEY_BLOCK = re.compile(rb"-----BEGIN ([A-Z ]*)PRIVATE KEY-----.+?-----END \1PRIVATE KEY-----",
                        re.S)

ContextFactory = Callable[[str], ssl.SSLContext]  # a PEM file's path -> its SSLContext


class CertificateError(Exception):
    """A certificate file that cannot be served. The message names the file and why."""


@dataclass(slots=True)
class Certificate:
    """One loaded certificate file and the SSLContext that serves it."""

    path: str
    context: ssl.SSLContext
    names: tuple[str, ...]  # subjectAltName DNS names (else the subject CN)
    serial: int
    not_after: datetime
    thumbprint: str  # SHA-1 of the leaf, upper-case hex (IIS's certificateHash)
    warned: bool = field(default=False)

    def days_left(self, now: datetime) -> int:
        return (self.not_after - now).days


def host_of(filename: str) -> str | None:
    """The host name a central-store file is for: `www.example.com.pem` -> www.example.com,
    `_.example.com.pem` -> *.example.com; None for other files."""
    if not filename.lower().endswith(".pem"):
        return None
    name = filename[:-4].lower()
    if name.startswith("_."):
        name = "*" + name[1:]
    return name or None


def covers(names: tuple[str, ...], host: str) -> bool:
    """Whether a certificate for `names` is valid for `host` (a store file's name, which
    may be a wildcard itself): an exact name, or a wildcard for the left-most label."""
    if host in names:
        return True
    if host.startswith("*."):
        return False
    parent = host.partition(".")[2]
    return bool(parent) and f"*.{parent}" in names


def read_pem(path: str) -> bytes:
    """The file's bytes, read through one descriptor that is checked first."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        raise CertificateError(f"{path}: cannot open: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise CertificateError(f"{path}: not a regular file")
        if info.st_mode & 0o077:
            raise CertificateError(
                f"{path}: its private key is readable by others (mode "
                f"{stat.S_IMODE(info.st_mode):04o}): chmod 600 it; a key that others can "
                "read is refused, as sshd refuses one")
        if info.st_size > MAX_PEM_BYTES:
            raise CertificateError(f"{path}: larger than {MAX_PEM_BYTES} bytes")
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read(MAX_PEM_BYTES + 1)
    finally:
        os.close(fd)


def load(path: str, make_context: ContextFactory, now: datetime | None = None) -> Certificate:
    """Read, check and load one PEM file (CertificateError: why it cannot be served)."""
    data = read_pem(path)
    blocks = _CERT_BLOCK.findall(data)
    if not blocks:
        raise CertificateError(f"{path}: no certificate in the file")
    if not _KEY_BLOCK.search(data):
        raise CertificateError(f"{path}: no private key in the file (chain, then key)")
    try:
        leaf = x509.load_pem_x509_certificate(blocks[0])
    except ValueError as exc:
        raise CertificateError(f"{path}: the certificate cannot be read: {exc}") from None
    now = now or datetime.now(UTC)
    if leaf.not_valid_after_utc <= now:
        raise CertificateError(f"{path}: the certificate expired on "
                               f"{leaf.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC")
    if leaf.not_valid_before_utc > now:
        raise CertificateError(f"{path}: the certificate is not valid before "
                               f"{leaf.not_valid_before_utc:%Y-%m-%d %H:%M:%S} UTC")
    context = _load_context(path, data, make_context)
    return Certificate(path, context, _names(leaf), leaf.serial_number,
                       leaf.not_valid_after_utc, _thumbprint(blocks[0]))


def _load_context(path: str, data: bytes, make_context: ContextFactory) -> ssl.SSLContext:
    """OpenSSL loads the bytes checked above, from an anonymous memory file."""
    fd = os.memfd_create("webgarden-cert", os.MFD_CLOEXEC)
    try:
        os.write(fd, data)
        try:
            return make_context(f"/proc/self/fd/{fd}")
        except ssl.SSLError as exc:
            why = ("the private key does not fit the certificate"
                   if "KEY_VALUES_MISMATCH" in str(exc) else exc.reason or str(exc))
            raise CertificateError(f"{path}: {why}") from None
    finally:
        os.close(fd)


def _names(leaf: x509.Certificate) -> tuple[str, ...]:
    with contextlib.suppress(x509.ExtensionNotFound):
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        return tuple(n.lower() for n in san.value.get_values_for_type(x509.DNSName))
    cns = leaf.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return tuple(str(cn.value).lower() for cn in cns)


def _thumbprint(pem: bytes) -> str:
    return hashlib.sha1(ssl.PEM_cert_to_DER_cert(pem.decode("ascii")),
                        usedforsecurity=False).hexdigest().upper()


def pem_files(directory: str) -> list[str]:
    """The `.pem` files of a store directory, sorted (bounded)."""
    try:
        names = sorted(n for n in os.listdir(directory) if n.lower().endswith(".pem"))
    except OSError as exc:
        raise CertificateError(f"{directory}: cannot list: {exc.strerror}") from None
    return [os.path.join(directory, n) for n in names[:MAX_STORE_FILES]]


def row(cert: Certificate, now: datetime) -> dict[str, Any]:
    """One line of `webgarden list certs`."""
    return {"name": ",".join(cert.names), "file": cert.path, "serial": f"{cert.serial:X}",
            "not_after": cert.not_after.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "days_left": cert.days_left(now)}
