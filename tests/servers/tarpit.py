"""A tarpit on localhost: accepts every TCP connection and never sends a byte.

A mailbox pointed at it must give up at its timeout (services record the error and back
off) without holding up anything else."""

from __future__ import annotations

import contextlib
import socket
import threading


class Tarpit:
    """`with Tarpit() as pit:` listens on 127.0.0.1:pit.port until the block ends."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.port = self._server.getsockname()[1]
        self.accepted = 0
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, name="tarpit", daemon=True)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return  # closed
            self.accepted += 1
            self._held.append(conn)  # held open, never answered

    def start(self) -> Tarpit:
        self._thread.start()
        return self

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)
        self._server.close()
        for conn in self._held:
            conn.close()

    def __enter__(self) -> Tarpit:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
