"""A man in the middle for the downgrade tests: a TCP proxy in front of a real server that
removes the offer of encryption (IMAP and SMTP STARTTLS, POP3 STLS) from what the server
says, and records every byte the client sends. The push tests use it too: to take IDLE out
of the server's capabilities, to cut connections, and to count the open ones."""

from __future__ import annotations

import re
import socket
import threading

# IMAP: the STARTTLS word in a greeting's [CAPABILITY ...] or a CAPABILITY answer.
_IMAP_STARTTLS = re.compile(rb"(?i)\sSTARTTLS(?=[\s\]])")
# POP3: the STLS line of a CAPA answer; SMTP: a STARTTLS line inside an EHLO answer.
_POP3_STLS = re.compile(rb"(?i)^STLS\r?\n$")
_SMTP_STARTTLS = re.compile(rb"(?i)^250-STARTTLS\r?\n$")


def strip_encryption_offer(line: bytes) -> bytes:
    """One server line without its STARTTLS or STLS offer."""
    if _POP3_STLS.match(line) or _SMTP_STARTTLS.match(line):
        return b""
    if b"CAPABILITY" in line.upper():
        return _IMAP_STARTTLS.sub(b"", line)
    return line


_IMAP_IDLE = re.compile(rb"(?i)\sIDLE(?=[\s\]])")


def strip_idle_and_encryption(line: bytes) -> bytes:
    """A server line without STARTTLS and without IDLE in its capabilities."""
    line = strip_encryption_offer(line)
    return _IMAP_IDLE.sub(b"", line) if b"CAPABILITY" in line.upper() else line


class DowngradeProxy:
    """Listens on 127.0.0.1; each connection goes to target, server lines rewritten by
    `rewrite` (None: bytes pass as they are, TLS included)."""

    def __init__(self, target_host: str, target_port: int, rewrite=strip_encryption_offer) -> None:
        self.target = (target_host, target_port)
        self.rewrite = rewrite
        self.refusing = False  # True: every new connection is closed at once
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.host, self.port = self._listener.getsockname()[:2]
        self._sent = bytearray()  # everything clients sent towards the server
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._closed = False

    @property
    def client_bytes(self) -> bytes:
        with self._lock:
            return bytes(self._sent)

    @property
    def open_connections(self) -> int:
        """Connections whose client has not closed its side yet."""
        with self._lock:
            return len(self._pairs)

    def cut(self) -> None:
        """Close every connection now, as a crashed server or a dropped network would."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for sock in pair:
                _close(sock)

    def start(self) -> DowngradeProxy:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        self._closed = True
        for sock in [self._listener, *self._sockets]:
            try:
                sock.close()
            except OSError:
                pass

    def __enter__(self) -> DowngradeProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.refusing:
                _close(client)
                continue
            server = socket.create_connection(self.target, timeout=10)
            server.settimeout(None)
            self._sockets += [client, server]
            with self._lock:
                self._pairs.append((client, server))
            threading.Thread(
                target=self._client_to_server, args=(client, server), daemon=True
            ).start()
            threading.Thread(
                target=self._server_to_client, args=(server, client), daemon=True
            ).start()

    def _client_to_server(self, client: socket.socket, server: socket.socket) -> None:
        try:
            while data := client.recv(65536):
                with self._lock:
                    self._sent += data
                server.sendall(data)
        except OSError:
            pass
        finally:
            _shut(server)
            with self._lock:
                self._pairs = [pair for pair in self._pairs if pair[0] is not client]

    def _server_to_client(self, server: socket.socket, client: socket.socket) -> None:
        pending = b""
        try:
            while data := server.recv(65536):
                if self.rewrite is None:
                    client.sendall(data)
                    continue
                pending += data
                *lines, pending = pending.split(b"\n")
                out = b"".join(self.rewrite(line + b"\n") for line in lines)
                if out:
                    client.sendall(out)
        except OSError:
            pass
        finally:
            _shut(client)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass
