"""A capturing SMTP server (aiosmtpd) on 127.0.0.1 for tests."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

STAGES = ("MAIL", "RCPT", "DATA")


@dataclass(frozen=True)
class CapturedMessage:
    """One accepted message as the server received it."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes


@dataclass
class _Handler:
    """aiosmtpd handler: stores accepted messages and replays scripted answers."""

    messages: list[CapturedMessage] = field(default_factory=list)
    script: dict[str, deque[str]] = field(
        default_factory=lambda: {stage: deque() for stage in STAGES}
    )
    attempts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_answer(self, stage: str) -> str | None:
        with self.lock:
            queue = self.script[stage]
            return queue.popleft() if queue else None

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        answer = self.next_answer("MAIL")
        if answer is not None and not answer.startswith("2"):
            return answer
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return answer or "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        answer = self.next_answer("RCPT")
        if answer is not None and not answer.startswith("2"):
            return answer
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return answer or "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        answer = self.next_answer("DATA")
        with self.lock:
            self.attempts += 1
            if answer is None or answer.startswith("2"):
                self.messages.append(
                    CapturedMessage(
                        mail_from=envelope.mail_from or "",
                        rcpt_tos=list(envelope.rcpt_tos),
                        data=bytes(envelope.original_content or b""),
                    )
                )
        return answer or "250 Message accepted for delivery"


class CapturingSMTPServer:
    """aiosmtpd on 127.0.0.1 that keeps what it receives.

    auth=(user, password) requires AUTH PLAIN/LOGIN before MAIL; tls=(cert, key)
    offers STARTTLS (then AUTH is only offered after STARTTLS unless
    auth_require_tls=False). set_responses() scripts answers, e.g.
    ["451 4.3.0 Try again later", "250 OK"] at DATA for retry tests.
    """

    def __init__(
        self,
        *,
        auth: tuple[str, str] | None = None,
        tls: tuple[str | Path, str | Path] | None = None,
        require_starttls: bool = False,
        auth_require_tls: bool | None = None,
        responses: list[str] | None = None,
    ) -> None:
        self.host = "127.0.0.1"
        with socket.create_server((self.host, 0)) as probe:
            self.port: int = probe.getsockname()[1]
        self._handler = _Handler()
        if responses:
            self.set_responses(responses)
        kwargs: dict[str, Any] = {"server_hostname": "smtp.test", "ready_timeout": 10}
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(tls[0]), str(tls[1]))
            kwargs.update(tls_context=context, require_starttls=require_starttls)
        if auth is not None:
            kwargs.update(
                auth_required=True,
                auth_require_tls=(tls is not None)
                if auth_require_tls is None
                else auth_require_tls,
                authenticator=self._authenticator(*auth),
            )
        self._controller = Controller(self._handler, hostname=self.host, port=self.port, **kwargs)
        self._running = False

    @staticmethod
    def _authenticator(user: str, password: str) -> Any:
        def check(
            server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
        ) -> AuthResult:
            ok = (
                isinstance(data, LoginPassword)
                and data.login == user.encode()
                and data.password == password.encode()
            )
            return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535

        return check

    def start(self) -> CapturingSMTPServer:
        """Start serving in a background thread."""
        self._controller.start()
        self._running = True
        return self

    def stop(self) -> None:
        """Stop serving."""
        if self._running:
            self._running = False
            self._controller.stop()

    def __enter__(self) -> CapturingSMTPServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def messages(self) -> list[CapturedMessage]:
        """A copy of the accepted messages, oldest first."""
        with self._handler.lock:
            return list(self._handler.messages)

    @property
    def attempts(self) -> int:
        """How many times a client reached DATA (accepted or not)."""
        with self._handler.lock:
            return self._handler.attempts

    def set_responses(self, responses: list[str], stage: str = "DATA") -> None:
        """Answer the next transactions at `stage` with these lines, then normally."""
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}")
        with self._handler.lock:
            self._handler.script[stage] = deque(responses)

    def clear(self) -> None:
        """Forget received messages, attempts and scripted answers."""
        with self._handler.lock:
            self._handler.messages.clear()
            self._handler.attempts = 0
            for queue in self._handler.script.values():
                queue.clear()

    def wait_for(self, count: int, timeout: float = 5.0) -> list[CapturedMessage]:
        """Wait until at least `count` messages arrived; return them."""
        deadline = time.monotonic() + timeout
        while len(self.messages) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"expected {count} messages, got {len(self.messages)}")
            time.sleep(0.02)
        return self.messages
