"""TLS material and mutual authentication for the peer links (DESIGN §3)."""

from __future__ import annotations

import asyncio
import datetime
import ssl
from pathlib import Path

import pytest
from cryptography import x509

from consensus import tls


def _write(tmp: Path, node: str) -> tuple[bytes, str, str]:
    cert, key = tls.generate_node_certificate(node)
    (tmp / f"{node}.crt").write_bytes(cert)
    (tmp / f"{node}.key").write_bytes(key)
    return cert, str(tmp / f"{node}.crt"), str(tmp / f"{node}.key")


def test_certificate_is_valid_ten_years_and_names_the_node() -> None:
    cert_pem, key_pem = tls.generate_node_certificate("n1")
    cert = x509.load_pem_x509_certificate(cert_pem)
    life = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert life >= datetime.timedelta(days=3650)
    assert cert.subject.rfc4514_string() == "CN=n1"
    assert b"PRIVATE KEY" in key_pem


def test_fingerprint_is_sha256_of_der() -> None:
    import hashlib

    from cryptography.hazmat.primitives import serialization

    cert_pem, _ = tls.generate_node_certificate("n1")
    der = x509.load_pem_x509_certificate(cert_pem).public_bytes(serialization.Encoding.DER)
    assert tls.fingerprint(cert_pem) == hashlib.sha256(der).digest()
    assert tls.fingerprint(cert_pem.decode()) == tls.fingerprint_der(der)
    with pytest.raises(tls.TLSConfigError):
        tls.fingerprint(b"not a certificate")


def test_only_member_certificates_complete_a_handshake(tmp_path: Path) -> None:
    a, a_crt, a_key = _write(tmp_path, "a")
    b, b_crt, b_key = _write(tmp_path, "b")
    _, x_crt, x_key = _write(tmp_path, "x")

    async def main() -> list[str]:
        sctx = tls.server_context(a_crt, a_key, [a, b])
        outcomes: list[str] = []

        async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            try:
                await w.start_tls(sctx)
            except ssl.SSLError:
                outcomes.append("refused")
                w.close()
                return
            so = w.get_extra_info("ssl_object")
            assert so.version() == "TLSv1.3"
            peer = tls.fingerprint_der(so.getpeercert(binary_form=True))
            outcomes.append("b" if peer == tls.fingerprint(b) else "?")
            w.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        for crt, key in ((b_crt, b_key), (x_crt, x_key)):
            ctx = tls.client_context(crt, key, [a])
            try:
                _, w = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
                await asyncio.sleep(0.1)
                w.close()
            except (ssl.SSLError, ConnectionError):
                pass
        await asyncio.sleep(0.1)
        server.close()
        return outcomes

    assert asyncio.run(main()) == ["b", "refused"]


def test_context_refuses_missing_files(tmp_path: Path) -> None:
    with pytest.raises(tls.TLSConfigError):
        tls.server_context(str(tmp_path / "no.crt"), str(tmp_path / "no.key"), [])
