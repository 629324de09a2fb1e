"""A real mosquitto for tests: free loopback port, anonymous / password + ACL / TLS, kill and restart.

Usage (plain, anonymous)::

    from tests.broker import Broker

    with Broker(tmp_path) as broker:          # started; stopped and cleaned up on exit
        broker.host, broker.port, broker.url  # "127.0.0.1", 41234, "mqtt://127.0.0.1:41234"
        broker.kill()                         # SIGKILL (an outage; in-memory state since last autosave is lost)
        broker.start()                        # same port, same persistence dir
        broker.restart()                      # kill() + start()
        broker.stop()                         # SIGTERM: mosquitto saves its persistence file

Password + ACL (user names are terminal ids; the default ACL confines each user to its own namespace)::

    Broker(tmp_path, users={"t1": "pw1", "backend": "pw"}, acl=Broker.terminal_acl("faceonly", admins=["backend"]))

TLS with client certificates (a throwaway CA is generated with `cryptography`)::

    broker = Broker(tmp_path, tls=True)               # require_certificate on by default
    broker.url                                        # "mqtts://127.0.0.1:PORT"
    broker.ca_cert                                    # Path of the CA certificate (PEM)
    cert, key = broker.client_cert("t1")              # a client certificate signed by that CA (CN=t1)
    other_ca = make_ca(tmp_path / "rogue")            # for "wrong CA is refused" tests

Queue limit per client: `Broker(tmp_path, max_queued_messages=1000)` (mosquitto's default; the tests'
default is 100000 so outage tests never lose queued messages at the broker).

Pytest fixtures are not defined here (conftest.py is shared); wrap `Broker` in your own fixture, e.g.::

    @pytest.fixture
    def broker(tmp_path):
        with Broker(tmp_path / "mosq") as b:
            yield b

Notes: mosquitto started as root drops to user `mosquitto`, which cannot read our 0600 files, so the
generated config says `user root` when we are root (ignored otherwise). The broker log is kept in
`<workdir>/mosquitto.log` (see `log_text()`) for failing tests. `persistence` is on with autosave after
every change, so a SIGKILLed broker keeps (almost) everything it acknowledged.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    def __init__(  # noqa: PLR0913 - keyword-only broker options
        self,
        workdir: Path,
        *,
        users: dict[str, str] | None = None,
        acl: str | None = None,
        tls: bool = False,
        require_certificate: bool = True,
        port: int | None = None,
        persistence: bool = True,
        start: bool = True,
        max_queued_messages: int = 100000,
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.users = dict(users or {})
        self.tls = tls
        self.proc: subprocess.Popen[bytes] | None = None
        # Chaos threads stop and start the broker while the test's own thread may stop it too.
        self._lifecycle = threading.RLock()
        self.conf = self.workdir / "mosquitto.conf"
        self.log = self.workdir / "mosquitto.log"
        self.data = self.workdir / "data"
        self.data.mkdir(exist_ok=True)
        self._ca: tuple[Path, Path] | None = None
        lines = [
            f"listener {self.port} {self.host}",
            f"allow_anonymous {'false' if self.users or (tls and require_certificate) else 'true'}",
            f"log_dest file {self.log}",
            "log_type all",
            "connection_messages true",
            f"max_queued_messages {max_queued_messages}",
            "max_inflight_messages 100",
            "set_tcp_nodelay true",
        ]
        if os.geteuid() == 0:
            lines.append("user root")
        if persistence:
            lines += [
                "persistence true",
                f"persistence_location {self.data}/",
                "autosave_interval 1",
                "autosave_on_changes true",
            ]
        if self.users:
            pwfile = self.workdir / "passwd"
            pwfile.write_text("")
            for user, password in self.users.items():
                subprocess.run([MOSQUITTO_PASSWD, "-b", str(pwfile), user, password], check=True)
            lines.append(f"password_file {pwfile}")
        if acl is not None:
            aclfile = self.workdir / "acl"
            aclfile.write_text(acl)
            lines.append(f"acl_file {aclfile}")
        if tls:
            self._ca = make_ca(self.workdir / "pki")
            server_cert, server_key = issue_cert(self._ca, self.workdir / "pki", "server", server=True)
            lines += [
                f"cafile {self._ca[0]}",
                f"certfile {server_cert}",
                f"keyfile {server_key}",
                f"require_certificate {'true' if require_certificate else 'false'}",
            ]
            if require_certificate and not self.users:
                lines.append("use_identity_as_username true")
        self.conf.write_text("\n".join(lines) + "\n")
        if start:
            self.start()

    # ---- addresses and credentials -------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"

    @property
    def ca_cert(self) -> Path:
        if self._ca is None:
            raise RuntimeError("this broker has no TLS")
        return self._ca[0]

    def client_cert(self, name: str) -> tuple[Path, Path]:
        """(certificate, key) PEM paths for a client with CN=`name`, signed by this broker's CA."""
        if self._ca is None:
            raise RuntimeError("this broker has no TLS")
        return issue_cert(self._ca, self.workdir / "pki", name, server=False)

    @staticmethod
    def terminal_acl(prefix: str = "faceonly", admins: tuple[str, ...] | list[str] = ()) -> str:
        """Each user may only use `<prefix>/v1/dev/<its user name>/#`; admins (backends) may use all of it."""
        lines = [f"user {a}\ntopic readwrite {prefix}/#\ntopic readwrite $share/#\n" for a in admins]
        lines.append(f"pattern readwrite {prefix}/v1/dev/%u/#\n")
        return "\n".join(lines)

    # ---- lifecycle ------------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        with self._lifecycle:
            self._start(timeout)

    def _start(self, timeout: float) -> None:
        if self.running:
            return
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=self.workdir,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise RuntimeError(f"mosquitto exited with {self.proc.returncode}: {err}\n{self.log_text()}")
            with contextlib.suppress(OSError), socket.create_connection((self.host, self.port), 0.2):
                return
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"mosquitto did not listen on {self.port} within {timeout}s\n{self.log_text()}")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: an abrupt outage (clients see the TCP connection drop)."""
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        """SIGTERM: a clean shutdown; mosquitto writes its persistence file."""
        self._signal(signal.SIGTERM)

    def restart(self) -> None:
        self.kill()
        self.start()

    def _signal(self, sig: int) -> None:
        with self._lifecycle:
            self._signal_locked(sig)

    def _signal_locked(self, sig: int) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def __enter__(self) -> Broker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


# ---- a throwaway PKI ----------------------------------------------------------------------------


def make_ca(directory: Path, name: str = "faceonly-test-ca") -> tuple[Path, Path]:
    """A self-signed CA: (certificate path, key path)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _write_pair(directory, "ca", cert, key, serialization)


def issue_cert(ca: tuple[Path, Path], directory: Path, name: str, *, server: bool) -> tuple[Path, Path]:
    """A leaf certificate with CN=`name` signed by `ca` (server: SAN 127.0.0.1 + localhost)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_cert = x509.load_pem_x509_certificate(Path(ca[0]).read_bytes())
    ca_key = serialization.load_pem_private_key(Path(ca[1]).read_bytes(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()), critical=False
        )
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    cert = builder.sign(ca_key, hashes.SHA256())
    return _write_pair(Path(directory), name, cert, key, serialization)


def _write_pair(directory: Path, stem: str, cert, key, serialization) -> tuple[Path, Path]:
    cert_path, key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path
