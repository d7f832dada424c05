"""A throwaway redis-server on a unix socket (or a free TCP port) for tests."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from tests.servers.dovecot import free_ports, tied_to_parent

REDIS_BIN = "/usr/bin/redis-server"


class RedisServer:
    """Debian's redis-server without persistence; `.url` is what REDIS_URL takes."""

    def __init__(self, *, tcp: bool = False) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="redis-"))
        self.socket_path = self.root / "redis.sock"
        self.port: int | None = free_ports(1)[0] if tcp else None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """redis://127.0.0.1:PORT/0 in TCP mode, else unix:///…/redis.sock."""
        if self.port is not None:
            return f"redis://127.0.0.1:{self.port}/0"
        return f"unix://{self.socket_path}"

    def start(self, timeout: float = 10.0) -> RedisServer:
        """Start redis-server in the foreground and wait until it answers PING."""
        if not Path(REDIS_BIN).exists():
            raise RuntimeError(f"{REDIS_BIN} is missing: apt-get install redis-server")
        args = [
            REDIS_BIN,
            "--port",
            str(self.port or 0),
            "--bind",
            "127.0.0.1",
            "--unixsocket",
            str(self.socket_path),
            "--unixsocketperm",
            "700",
            "--dir",
            str(self.root),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--logfile",
            str(self.root / "redis.log"),
        ]
        self._process = subprocess.Popen(
            tied_to_parent(args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                with redis.Redis.from_url(self.url, socket_connect_timeout=0.5) as client:
                    client.ping()
                return self
            except redis.ConnectionError as exc:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    log = self.log()
                    self.stop()
                    raise RuntimeError(f"redis-server did not start: {exc}\n{log}") from exc
                time.sleep(0.05)

    def log(self) -> str:
        """The server log so far."""
        path = self.root / "redis.log"
        return path.read_text() if path.exists() else ""

    def client(self) -> redis.Redis:
        """A new client connected to this server."""
        return redis.Redis.from_url(self.url)

    def stop(self) -> None:
        """Stop the server and delete its directory."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
