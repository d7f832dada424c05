"""A throwaway Dovecot (IMAP, IMAPS, POP3, POP3S) on 127.0.0.1 for tests."""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

DOVECOT_BIN = "/usr/sbin/dovecot"
HOST = "127.0.0.1"

_file_counter = itertools.count(1)
_user_counter = itertools.count(1)


@dataclass(frozen=True)
class MailUser:
    """A login on a DovecotServer."""

    email: str
    password: str
    server: DovecotServer

    def deliver(self, raw: bytes, folder: str = "INBOX") -> Path:
        """Drop a message into this user's folder."""
        return self.server.deliver(self.email, raw, folder)


def free_ports(count: int, host: str = HOST) -> list[int]:
    """Ask the kernel for `count` distinct free TCP ports on `host`."""
    sockets = [socket.create_server((host, 0)) for _ in range(count)]
    try:
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def tied_to_parent(argv: list[str]) -> list[str]:
    """Prefix argv so the server gets SIGTERM if the test process dies (even by SIGKILL).

    The signal follows the thread that started the server: start servers from
    the main thread (pytest fixtures do).
    """
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--", *argv] if setpriv else argv


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _wait_group_gone(pgid: int, timeout: float) -> bool:
    """Wait until no process of the group is left; False on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.01)
    return False


def wait_for_port(
    host: str, port: int, deadline: float, alive: subprocess.Popen[bytes], greeting: bool = False
) -> None:
    """Block until host:port accepts connections (and, if `greeting`, sends an OK line)."""
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5) as conn:
                if not greeting or b"OK" in conn.makefile("rb").readline():
                    return
        except OSError:
            pass
        if alive.poll() is not None:
            raise RuntimeError(f"server exited with status {alive.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing ready on {host}:{port}")
        time.sleep(0.05)


class DovecotServer:
    """A Dovecot instance with its own config, users, mail and ports in a temp dir.

    Ports: imap_port (plain, STARTTLS when TLS is configured), imaps_port,
    pop3_port (plain, STLS), pop3s_port. Without cert_pem/key_pem TLS is off
    and imaps_port/pop3s_port are None. Dovecot counts a connection whose
    local and remote IP are equal as secure, so disable_plaintext_auth only
    bites with host="127.0.0.2" (clients then come from 127.0.0.1).
    """

    def __init__(
        self,
        *,
        host: str = HOST,
        cert_pem: str | Path | None = None,
        key_pem: str | Path | None = None,
        oauth2_introspection_url: str | None = None,
        disable_plaintext_auth: bool = False,
    ) -> None:
        self.host = host
        # Not under pytest's tmp_path: its 0700 parents stop dovecot's auth and
        # mail processes (uid dovecot) from reaching the passwd-file and Maildirs.
        self.root = Path(tempfile.mkdtemp(prefix="dovecot-"))
        self.root.chmod(0o755)
        self.tls = cert_pem is not None and key_pem is not None
        self.cert_pem, self.key_pem = cert_pem, key_pem
        self.oauth2_introspection_url = oauth2_introspection_url
        self.disable_plaintext_auth = disable_plaintext_auth
        self.config_path = self.root / "dovecot.conf"
        self.users_dir = self.root / "users"
        self.log_path = self.root / "dovecot.log"
        self.mail_root = self.root / "mail"
        entry = pwd.getpwnam("dovecot")
        self.uid, self.gid = entry.pw_uid, entry.pw_gid
        ports = free_ports(4, host)
        self.imap_port = ports[0]
        self.pop3_port = ports[1]
        self.imaps_port: int | None = ports[2] if self.tls else None
        self.pop3s_port: int | None = ports[3] if self.tls else None
        self._users: dict[str, str] = {}
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None

    # -- lifecycle -------------------------------------------------------

    def start(self, timeout: float = 15.0) -> DovecotServer:
        """Write the config, start dovecot in the foreground and wait for its ports."""
        if not Path(DOVECOT_BIN).exists():
            raise RuntimeError(
                f"{DOVECOT_BIN} is missing: apt-get install dovecot-imapd dovecot-pop3d"
            )
        for sub in ("run", "state", "mail", "users"):
            (self.root / sub).mkdir(mode=0o755, exist_ok=True)
        self.config_path.write_text(self._config())
        # -F keeps the master in the foreground, as our child.
        self._process = subprocess.Popen(
            tied_to_parent([DOVECOT_BIN, "-F", "-c", str(self.config_path)]),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: stop() ends exactly this instance
        )
        deadline = time.monotonic() + timeout
        try:
            # The plain ports greet only once the auth process is up: a dovecot
            # stopped while auth still starts lingers for seconds.
            for port in self.ports:
                plain = port in (self.imap_port, self.pop3_port)
                wait_for_port(self.host, port, deadline, self._process, greeting=plain)
        except (OSError, RuntimeError) as exc:
            log = self.log()
            self.stop()
            raise RuntimeError(f"dovecot did not start: {exc}\n{log}") from exc
        return self

    @property
    def pid(self) -> int | None:
        """The master's process id (setpriv execs it), or None when stopped."""
        return self._process.pid if self._process is not None else None

    def stop(self, remove_files: bool = True) -> None:
        """Stop dovecot and its children, then delete its directory."""
        process, self._process = self._process, None
        if process is not None:
            # SIGTERM to the master alone takes 1.5 s or more (its log process
            # drains); the whole group (created by start()) goes at once.
            _signal_group(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                _signal_group(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
            if not _wait_group_gone(process.pid, timeout=5):
                _signal_group(process.pid, signal.SIGKILL)
        if remove_files:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> DovecotServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def ports(self) -> list[int]:
        """All listening ports."""
        candidates = [self.imap_port, self.imaps_port, self.pop3_port, self.pop3s_port]
        return [p for p in candidates if p is not None]

    def log(self) -> str:
        """The dovecot log so far (for failing tests)."""
        return self.log_path.read_text() if self.log_path.exists() else ""

    # -- users and mail --------------------------------------------------

    def add_user(self, email: str, password: str) -> None:
        """Add a login, usable at once (also while dovecot runs)."""
        if any(c in email + password for c in ":\n\r"):
            raise ValueError("':' and newlines cannot appear in passwd-file fields")
        with self._lock:
            if email in self._users:
                raise ValueError(f"user {email} exists")
            self._users[email] = password
            home = self.home(email)
            self._make_maildir(home / "Maildir")
            # One passwd-file per user: dovecot re-stats a passwd-file at most once
            # a second, so a user appended to a shared file right after another
            # login stays unknown for up to a second; a new file is read at once.
            line = f"{email}:{{PLAIN}}{password}:{self.uid}:{self.gid}::{home}\n"
            tmp = self.users_dir / f".{email}.tmp"
            tmp.write_text(line)
            tmp.chmod(0o644)
            os.rename(tmp, self.users_dir / f"{email}.passwd")

    def new_user(self, prefix: str = "user") -> MailUser:
        """Add a user with a unique address and a random password."""
        email = f"{prefix}-{next(_user_counter)}-{secrets.token_hex(3)}@example.com"
        user = MailUser(email=email, password=secrets.token_urlsafe(12), server=self)
        self.add_user(user.email, user.password)
        return user

    def home(self, email: str) -> Path:
        """The user's home directory (Maildir is inside)."""
        return self.mail_root / email

    def maildir(self, email: str, folder: str = "INBOX") -> Path:
        """The Maildir++ directory of one folder."""
        base = self.home(email) / "Maildir"
        return base if folder.upper() == "INBOX" else base / f".{folder}"

    def deliver(self, email: str, raw: bytes, folder: str = "INBOX") -> Path:
        """Drop a message into the folder's new/ as the mail server would."""
        if email not in self._users:
            raise KeyError(f"unknown user {email}")
        box = self.maildir(email, folder)
        self._make_maildir(box)
        # Maildir name "<seconds>.M<n>P<pid>": Dovecot gives UIDs in name order, so a counter
        # (not nanoseconds, which it misreads) keeps delivery order = UID order.
        name = f"{int(time.time())}.M{next(_file_counter):07d}P{os.getpid()}.mailchannel-test"
        tmp = box / "tmp" / name
        tmp.write_bytes(raw)
        os.chown(tmp, self.uid, self.gid)
        target = box / "new" / name
        os.rename(tmp, target)
        return target

    def clear(self, email: str) -> None:
        """Remove every message of every folder of the user."""
        base = self.home(email) / "Maildir"
        for box in [base, *base.glob(".*")]:
            for sub in ("new", "cur", "tmp"):
                for path in (box / sub).glob("*"):
                    path.unlink()

    def set_uidvalidity_change(self, email: str, folder: str = "INBOX") -> None:
        """Forget the folder's UIDs so dovecot assigns a new, higher UIDVALIDITY.

        Call it while no session of the user is open. dovecot-uidvalidity* in
        the Maildir root is kept: it is what makes the next value differ.
        """
        box = self.maildir(email, folder)
        doomed = [box / "dovecot-uidlist", *box.glob("dovecot.index*")]
        doomed += list((self.home(email) / "Maildir").glob("dovecot.list.index*"))
        for path in doomed:
            if path.exists():
                path.unlink()

    def _make_maildir(self, box: Path) -> None:
        for sub in ("cur", "new", "tmp"):
            (box / sub).mkdir(parents=True, exist_ok=True)
        # Everything from the home down belongs to the mail uid.
        path = box
        while path != self.mail_root:
            os.chown(path, self.uid, self.gid)
            for sub in ("cur", "new", "tmp"):
                if (path / sub).exists():
                    os.chown(path / sub, self.uid, self.gid)
            path = path.parent

    # -- config ----------------------------------------------------------

    def _config(self) -> str:
        r = self.root
        lines = [
            f"base_dir = {r}/run",
            f"state_dir = {r}/state",
            f"log_path = {self.log_path}",
            "protocols = imap pop3",
            f"listen = {self.host}",
            "default_login_user = dovenull",
            "default_internal_user = dovecot",
            "first_valid_uid = 1",
            "mail_location = maildir:~/Maildir",
            "auth_failure_delay = 0",
            f"disable_plaintext_auth = {'yes' if self.disable_plaintext_auth else 'no'}",
            "pop3_uidl_format = %08Xu%08Xv",
            "auth_verbose = yes",
            # Each IMAP session is a process; the default cap of 100 would make the 101st
            # connection (a fetch beside 100 IDLE connections) wait (bench --latency).
            "default_process_limit = 1000",
            "default_client_limit = 4000",
            "ssl = " + ("yes" if self.tls else "no"),
        ]
        if self.tls:
            lines += [f"ssl_cert = <{self.cert_pem}", f"ssl_key = <{self.key_pem}"]
        passwd_mechs = ""
        if self.oauth2_introspection_url:
            oauth_conf = r / "oauth2.conf"
            oauth_conf.write_text(
                "introspection_mode = post\n"
                f"introspection_url = {self.oauth2_introspection_url}\n"
                "username_attribute = username\n"
                "active_attribute = active\n"
                "active_value = true\n"
            )
            lines += [
                "auth_mechanisms = plain login xoauth2 oauthbearer",
                "passdb {",
                "  driver = oauth2",
                "  mechanisms = xoauth2 oauthbearer",
                f"  args = {oauth_conf}",
                "}",
            ]
            # Without this a token equal to the password would pass the passwd-file.
            passwd_mechs = "  mechanisms = plain login"
        else:
            lines.append("auth_mechanisms = plain login")
        lines += [
            "passdb {",
            "  driver = passwd-file",
            f"  args = scheme=PLAIN {self.users_dir}/%u.passwd",
            *([passwd_mechs] if passwd_mechs else []),
            "}",
            "userdb {",
            "  driver = passwd-file",
            f"  args = {self.users_dir}/%u.passwd",
            "}",
        ]
        lines += self._service(
            "imap-login", [("imap", self.imap_port, False), ("imaps", self.imaps_port, True)]
        )
        lines += self._service(
            "pop3-login", [("pop3", self.pop3_port, False), ("pop3s", self.pop3s_port, True)]
        )
        # mode = 0 drops the auth-penalty socket: without it every failed login from
        # 127.0.0.1 doubles the next one's delay (2, 4, 8… s) despite auth_failure_delay = 0.
        lines += [
            "service anvil {",
            "  chroot =",
            "  unix_listener anvil-auth-penalty {",
            "    mode = 0",
            "  }",
            "}",
        ]
        return "\n".join(lines) + "\n"

    @staticmethod
    def _service(name: str, listeners: list[tuple[str, int | None, bool]]) -> list[str]:
        out = [f"service {name} {{", "  chroot ="]
        for listener, port, implicit_tls in listeners:
            out.append(f"  inet_listener {listener} {{")
            out.append(f"    port = {port if port is not None else 0}")
            if implicit_tls:
                out.append("    ssl = yes")
            out.append("  }")
        out.append("}")
        return out
