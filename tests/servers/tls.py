"""A private CA and a server certificate, made with openssl, for TLS tests."""

from __future__ import annotations

import subprocess
from pathlib import Path


def _run(*args: str) -> None:
    subprocess.run(list(args), check=True, capture_output=True)


def make_ca_and_cert(directory: Path, *, hosts: list[str], name: str = "server") -> dict[str, str]:
    """Create ``ca.pem`` (self-signed CA) and ``NAME.pem``/``NAME.key`` signed by it with
    the given hosts as subjectAltNames (IP or DNS). Returns the file paths."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca = directory / "ca.key", directory / "ca.pem"
    if not ca.exists():
        _run(
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=syncd test CA",
            "-keyout",
            str(ca_key),
            "-out",
            str(ca),
        )
    key, csr, cert = directory / f"{name}.key", directory / f"{name}.csr", directory / f"{name}.pem"
    sans = ",".join(
        (f"IP:{h}" if h.replace(".", "").isdigit() or ":" in h else f"DNS:{h}") for h in hosts
    )
    ext = directory / f"{name}.ext"
    ext.write_text(f"subjectAltName={sans}\nbasicConstraints=CA:FALSE\n")
    _run(
        "openssl",
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        f"/CN={hosts[0]}",
        "-keyout",
        str(key),
        "-out",
        str(csr),
    )
    _run(
        "openssl",
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        str(ext),
        "-out",
        str(cert),
    )
    for p in (key, ca_key):
        p.chmod(0o644)  # slapd may run as another user in some setups; tests only
    return {"ca": str(ca), "cert": str(cert), "key": str(key)}
