"""Test certificates, made with the openssl command line: a test CA, and leaf certificates
with subjectAltNames signed by it, in a temporary directory."""

from __future__ import annotations

import datetime
import os
import subprocess
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


class CertAuthority:
    """A CA in `directory` (ca.pem, ca.key) that signs leaf certificates."""

    def __init__(self, directory: Path, name: str = "webgarden test CA") -> None:
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.cert = directory / "ca.pem"
        self.key = directory / "ca.key"
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                 "-nodes", "-keyout", str(self.key), "-out", str(self.cert), "-days", "30",
                 "-subj", f"/CN={name}", cwd=directory)
        self.serial = 0x1000

    def leaf(self, names: list[str], days: int = 30, client: bool = False
             ) -> tuple[bytes, bytes, int]:
        """(certificate PEM, key PEM, serial) for `names` (DNS subjectAltNames)."""
        self.serial += 1
        stem = self.dir / f"leaf-{self.serial}"
        _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-keyout", f"{stem}.key", "-out", f"{stem}.csr", "-subj", f"/CN={names[0]}",
                 cwd=self.dir)
        ext = stem.with_suffix(".ext")
        usage = "clientAuth" if client else "serverAuth"
        ext.write_text("subjectAltName=" + ",".join(f"DNS:{n}" for n in names)
                       + f"\nextendedKeyUsage={usage}\n")
        _openssl("x509", "-req", "-in", f"{stem}.csr", "-CA", str(self.cert), "-CAkey",
                 str(self.key), "-set_serial", str(self.serial), "-days", str(days),
                 "-extfile", str(ext), "-out", f"{stem}.pem", cwd=self.dir)
        return (Path(f"{stem}.pem").read_bytes(), Path(f"{stem}.key").read_bytes(),
                self.serial)

    def expired(self, names: list[str]) -> tuple[bytes, bytes, int]:
        """A leaf whose validity ended yesterday (re-signed: openssl's -days cannot)."""
        pem, key, serial = self.leaf(names)
        cert = x509.load_pem_x509_certificate(pem)
        ca_key = serialization.load_pem_private_key(self.key.read_bytes(), None)
        now = datetime.datetime.now(datetime.UTC)
        builder = (x509.CertificateBuilder().subject_name(cert.subject)
                   .issuer_name(cert.issuer).public_key(cert.public_key())
                   .serial_number(serial).not_valid_before(now - datetime.timedelta(days=30))
                   .not_valid_after(now - datetime.timedelta(days=1)))
        for ext in cert.extensions:
            builder = builder.add_extension(ext.value, ext.critical)
        signed = builder.sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
        return signed.public_bytes(serialization.Encoding.PEM), key, serial


def write_pem(path: Path, cert: bytes, key: bytes, mode: int = 0o600) -> Path:
    """The store's format: the chain, then the key; written whole, then renamed in place
    (as a deploy hook does), with `mode`."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(cert + key)
    os.chmod(tmp, mode)
    tmp.replace(path)
    return path
