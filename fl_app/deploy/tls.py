"""A private certificate authority for a secure deployment, and the SuperNodes' key pairs.

``--secure`` runs TLS between the SuperNodes (and the CLI) and the SuperLink, as production
does: a CA made here signs a server certificate for 127.0.0.1, and each SuperNode gets its own
EC key pair in OpenSSH format (what ``ssh-keygen -t ecdsa -b 384`` writes), whose public half
the operator registers with the SuperLink. Private keys are written mode 0600.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from fl_app.checkpoints.format import write_atomic

from .state import PRIVATE

CA_CERT = "ca.crt"
SERVER_CERT = "server.pem"
SERVER_KEY = "server.key"
VALID_FOR = timedelta(days=30)
_NOT_A_CA_KEY = dict.fromkeys(
    ("content_commitment", "key_encipherment", "data_encipherment", "key_agreement",
     "encipher_only", "decipher_only"), False,
)  # fmt: skip


def make_authority(tls_dir: Path, deploy_id: str, nodes: Iterable[str]) -> None:
    """Write ca.crt (+ ca.key), server.pem/.key for 127.0.0.1, and ``<node>``/``<node>.pub``
    for every SuperNode name in `nodes`, into `tls_dir`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    tls_dir.mkdir(parents=True, exist_ok=True)
    now = datetime.now(timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"swipe-fl {deploy_id} CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + VALID_FOR)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, **_NOT_A_CA_KEY
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP384R1())
    cert = _server_certificate(key, ca_key, ca_name, ca_ski, now)
    pem = serialization.Encoding.PEM
    (tls_dir / CA_CERT).write_bytes(ca.public_bytes(pem))
    (tls_dir / SERVER_CERT).write_bytes(cert.public_bytes(pem))
    write_atomic(tls_dir / "ca.key", _pkcs8(ca_key), mode=PRIVATE)
    write_atomic(tls_dir / SERVER_KEY, _pkcs8(key), mode=PRIVATE)
    for name in nodes:
        node_key = ec.generate_private_key(ec.SECP384R1())
        private = node_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        public = node_key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        write_atomic(tls_dir / name, private, mode=PRIVATE)
        (tls_dir / f"{name}.pub").write_bytes(public + b"\n")


def _server_certificate(key: Any, ca_key: Any, ca_name: Any, ca_ski: Any, now: datetime) -> Any:
    """The SuperLink's certificate: 127.0.0.1 and localhost, server auth only, signed by the CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + VALID_FOR)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=False, crl_sign=False, **_NOT_A_CA_KEY
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )


def _pkcs8(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
