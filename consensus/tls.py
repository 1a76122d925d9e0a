"""Mutual TLS 1.3 for the Raft peer links (DESIGN §3).

Every node holds a self-signed certificate; the consortium's *current members'* certificates
are the only trust anchors a node loads, on both the server and the client side, so a process
without a member certificate fails the handshake.  Python's ``ssl`` module cannot pin a
fingerprint on the server side by itself, so after every handshake the transport also compares
the SHA-256 of the peer's DER certificate with the member list (:func:`fingerprint`): that pin is
what binds a connection to one node id, and what takes effect at once when a member is removed
(OpenSSL's store can only grow, the pin set is replaced).

The low-level ``ssl``/``cryptography`` errors never leave this module raw: they become
:class:`TLSConfigError`.
"""

from __future__ import annotations

import datetime
import hashlib
import ssl
from collections.abc import Iterable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "TLSConfigError",
    "client_context",
    "fingerprint",
    "fingerprint_der",
    "generate_node_certificate",
    "server_context",
]


class TLSConfigError(Exception):
    """A certificate or key cannot be loaded or used for a peer context."""


def generate_node_certificate(node_id: str, days: int = 3650) -> tuple[bytes, bytes]:
    """Make a self-signed certificate and private key for ``node_id``.

    Returns ``(certificate_pem, private_key_pem)``.  The key is ECDSA P-256 (supported by every
    TLS 1.3 stack); the certificate is valid for ``days`` days (DESIGN §3: `init` issues ten
    years), names the node in its CN and a DNS SAN, and allows both server and client auth,
    because every node is both.  It is its own CA (``BasicConstraints(ca=True)``) so OpenSSL
    accepts it as a trust anchor that is also the end-entity certificate.
    """
    if not node_id or len(node_id) > 64:
        raise TLSConfigError(f"node id {node_id!r} must be 1..64 characters")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node_id)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(node_id)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert_pem, key_pem


def fingerprint_der(cert_der: bytes) -> bytes:
    """SHA-256 of a DER certificate: the ``tls_fingerprint`` of DESIGN §2 (32 bytes)."""
    return hashlib.sha256(cert_der).digest()


def fingerprint(cert_pem: bytes | str) -> bytes:
    """SHA-256 of the DER form of a PEM certificate (32 bytes; ``.hex()`` for the genesis file)."""
    data = cert_pem.encode("ascii") if isinstance(cert_pem, str) else cert_pem
    try:
        cert = x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise TLSConfigError(f"not a PEM certificate: {exc}") from exc
    return fingerprint_der(cert.public_bytes(serialization.Encoding.DER))


def _pem_text(cert_pem: bytes | str) -> str:
    text = cert_pem.decode("ascii") if isinstance(cert_pem, bytes) else cert_pem
    fingerprint(text)  # validates
    return text


def add_trust_anchors(ctx: ssl.SSLContext, certs: Iterable[bytes | str]) -> None:
    """Add member certificates to a context's trust store.

    OpenSSL's store only grows; removal is enforced by the fingerprint pin, which the transport
    checks after every handshake against the current member set.
    """
    pems = "".join(_pem_text(c) for c in certs)
    if not pems:
        return
    try:
        ctx.load_verify_locations(cadata=pems)
    except ssl.SSLError as exc:
        raise TLSConfigError(f"cannot load member certificates: {exc}") from exc


def _base_context(
    purpose: ssl.Purpose, cert_path: str, key_path: str, trusted: Iterable[bytes | str]
) -> ssl.SSLContext:
    ctx = ssl.SSLContext(
        ssl.PROTOCOL_TLS_SERVER if purpose is ssl.Purpose.CLIENT_AUTH else ssl.PROTOCOL_TLS_CLIENT
    )
    # TLS 1.3 only (DESIGN §3): no downgrade to 1.2 cipher suites or renegotiation.
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    # Identity is the certificate pin, not a host name: peers may sit behind proxies or be
    # renumbered (DESIGN §4 `[peers]` overrides), so host names are not checked.
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    try:
        ctx.load_cert_chain(cert_path, key_path)
    except (ssl.SSLError, OSError) as exc:
        raise TLSConfigError(f"cannot load node certificate {cert_path}: {exc}") from exc
    add_trust_anchors(ctx, trusted)
    return ctx


def server_context(cert_path: str, key_path: str, trusted: Iterable[bytes | str]) -> ssl.SSLContext:
    """A TLS 1.3 server context that requires a client certificate among ``trusted``."""
    return _base_context(ssl.Purpose.CLIENT_AUTH, cert_path, key_path, trusted)


def client_context(cert_path: str, key_path: str, trusted: Iterable[bytes | str]) -> ssl.SSLContext:
    """A TLS 1.3 client context that presents our certificate and trusts only ``trusted``."""
    return _base_context(ssl.Purpose.SERVER_AUTH, cert_path, key_path, trusted)
