"""A throwaway certificate authority and a tiny TLS listener for tests."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

LOCALHOST_NAMES = ("DNS:localhost", "IP:127.0.0.1")


@dataclass(frozen=True)
class TestCA:
    """Paths of the PEM files made by make_test_ca()."""

    __test__ = False  # not a pytest test class despite the name

    ca_pem: Path
    cert_pem: Path
    key_pem: Path
    untrusted_cert_pem: Path
    untrusted_key_pem: Path
    wrong_host_cert_pem: Path
    wrong_host_key_pem: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mailchannel tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _san(names: tuple[str, ...]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in names:
        kind, _, value = name.partition(":")
        if kind == "IP":
            entries.append(x509.IPAddress(ipaddress.ip_address(value)))
        else:
            entries.append(x509.DNSName(value))
    return x509.SubjectAlternativeName(entries)


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o644)  # dovecot reads it; it is a test key
    return path


def _write_cert(cert: x509.Certificate, path: Path) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name | None = None,
    issuer_key: ec.EllipticCurvePrivateKey | None = None,
    san: tuple[str, ...] = (),
    is_ca: bool = False,
) -> x509.Certificate:
    """Build a certificate; self-signed when no issuer is given."""
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer or _name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if is_ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        builder = builder.add_extension(_san(san), critical=False).add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
    if issuer_key is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    return builder.sign(issuer_key or key, hashes.SHA256())


def make_test_ca(directory: str | Path) -> TestCA:
    """Write a CA, a localhost server cert, a self-signed cert and a wrong-host cert."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _certificate("mailchannel test CA", ca_key, is_ca=True)

    def issue(stem: str, names: tuple[str, ...]) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _certificate(stem, key, issuer=ca_cert.subject, issuer_key=ca_key, san=names)
        return _write_cert(cert, out / f"{stem}.pem"), _write_key(key, out / f"{stem}-key.pem")

    cert_pem, key_pem = issue("server", LOCALHOST_NAMES)
    wrong_cert, wrong_key = issue("wrong-host", ("DNS:wrong.example",))
    # Valid for localhost, but signed by nobody the client trusts.
    self_key = ec.generate_private_key(ec.SECP256R1())
    self_cert = _certificate("untrusted", self_key, san=LOCALHOST_NAMES)
    return TestCA(
        ca_pem=_write_cert(ca_cert, out / "ca.pem"),
        cert_pem=cert_pem,
        key_pem=key_pem,
        untrusted_cert_pem=_write_cert(self_cert, out / "untrusted.pem"),
        untrusted_key_pem=_write_key(self_key, out / "untrusted-key.pem"),
        wrong_host_cert_pem=wrong_cert,
        wrong_host_key_pem=wrong_key,
    )


class TlsGreetingServer:
    """Serve one certificate on 127.0.0.1 with implicit TLS and send a greeting line.

    Enough for a client to finish (or refuse) the handshake and read a banner:
    tests use it to provoke untrusted-certificate and hostname-mismatch errors
    without a second mail server.
    """

    def __init__(
        self,
        cert_pem: str | Path,
        key_pem: str | Path,
        greeting: bytes = b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] test server ready\r\n",
    ) -> None:
        self.host = "127.0.0.1"
        self.greeting = greeting
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(str(cert_pem), str(key_pem))
        self._listener = socket.create_server((self.host, 0))
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        try:
            with self._context.wrap_socket(conn, server_side=True) as tls:
                tls.sendall(self.greeting)
                while tls.recv(4096):
                    pass
        except (ssl.SSLError, OSError):
            pass  # the client refusing our certificate is the point of this server
        finally:
            conn.close()

    def stop(self) -> None:
        """Stop accepting connections."""
        self._stopping.set()
        self._listener.close()
        self._thread.join(timeout=5)

    def __enter__(self) -> TlsGreetingServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
