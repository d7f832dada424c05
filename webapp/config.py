"""Settings from the environment, with embedded defaults kept in instance/ (12-factor)."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.fernet import Fernet

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _instance_path() -> Path:
    return Path(os.environ.get("INSTANCE_PATH") or PROJECT_ROOT / "instance").resolve()


def _read_or_create(path: Path, make) -> str:
    """Return the secret stored in path, creating it (mode 600) on first use."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = make()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    return value


def _normalise_db_url(url: str) -> str:
    # Heroku-style platforms hand out postgres:// URLs; SQLAlchemy wants a driver name.
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


@dataclass
class Settings:
    """Everything the web app, the worker and the scheduler need to agree on."""

    instance_path: Path
    database_url: str
    redis_url: str | None
    secret_key: str
    encryption_keys: list[str]
    port: int
    external_url: str
    mail_ca_bundle: str | None
    queue_name: str = "mailchannel"
    session_idle_hours: float = 12.0  # SESSION_IDLE_HOURS: a session unused this long ends
    session_max_days: float = 14.0  # SESSION_MAX_DAYS: a session ends this long after sign-in
    trusted_proxies: int = 0  # TRUSTED_PROXIES: proxies in front whose X-Forwarded-For is believed
    worker_nice: int = 10  # WORKER_NICE: how much lower the worker's and watcher's CPU priority is
    worker_yield: bool = True  # WORKER_YIELD: workers wait while this host answers pages
    extra: dict = field(default_factory=dict)

    @property
    def secure_cookies(self) -> bool:
        return self.external_url.startswith("https://")

    @property
    def redirect_uri(self) -> str:
        """The OAuth redirect URI, always built from EXTERNAL_URL, never from a request."""
        return self.external_url.rstrip("/") + "/oauth/callback"


def load_settings(overrides: dict | None = None) -> Settings:
    """Read settings from the environment (overrides win), creating instance/ secrets once."""
    env = {**os.environ, **{k: str(v) for k, v in (overrides or {}).items() if v is not None}}
    instance = Path(env.get("INSTANCE_PATH") or _instance_path()).resolve()
    instance.mkdir(parents=True, exist_ok=True)
    port = int(env.get("PORT") or 5000)
    db_url = env.get("DATABASE_URL") or f"sqlite:///{instance / 'mailchannel.db'}"
    secret_key = env.get("SECRET_KEY") or _read_or_create(
        instance / "secret_key", lambda: secrets.token_urlsafe(48)
    )
    keys = env.get("ENCRYPTION_KEY") or _read_or_create(
        instance / "encryption.key", lambda: Fernet.generate_key().decode()
    )
    return Settings(
        instance_path=instance,
        database_url=_normalise_db_url(db_url),
        redis_url=env.get("REDIS_URL") or None,
        secret_key=secret_key,
        encryption_keys=[k.strip() for k in keys.split(",") if k.strip()],
        port=port,
        external_url=(env.get("EXTERNAL_URL") or f"http://127.0.0.1:{port}").rstrip("/"),
        mail_ca_bundle=env.get("MAIL_CA_BUNDLE") or None,
        queue_name=env.get("RQ_QUEUE") or "mailchannel",
        session_idle_hours=_positive(env, "SESSION_IDLE_HOURS", 12.0),
        session_max_days=_positive(env, "SESSION_MAX_DAYS", 14.0),
        trusted_proxies=_proxies(env.get("TRUSTED_PROXIES") or "0"),
        worker_nice=_nice(env.get("WORKER_NICE") or "10"),
        worker_yield=_switch(env, "WORKER_YIELD", True),
    )


def _proxies(raw: str) -> int:
    if not raw.strip().isdigit():
        raise ValueError(f"TRUSTED_PROXIES must be a number of proxies (0, 1, 2…), not {raw!r}.")
    return int(raw)


def _nice(raw: str) -> int:
    """0 (as the web) to 19 (only what the web leaves); anything else stops the start."""
    value = raw.strip()
    if not value.isdigit() or int(value) > 19:
        raise ValueError(f"WORKER_NICE must be a niceness from 0 to 19, not {raw!r}.")
    return int(value)


def _switch(env: dict, name: str, default: bool) -> bool:
    """1/0 (also on/off, true/false, yes/no) from the environment; anything else stops the start."""
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "on", "true", "yes"):
        return True
    if raw in ("0", "off", "false", "no"):
        return False
    raise ValueError(f"{name} must be 1 (on) or 0 (off), not {env.get(name)!r}.")


def _positive(env: dict, name: str, default: float) -> float:
    """A positive number from the environment (the default when unset); anything else stops the
    start with a message naming the setting."""
    raw = env.get(name) or ""
    try:
        value = float(raw) if raw.strip() else default
    except ValueError:
        value = 0.0
    if not value > 0:
        raise ValueError(f"{name} must be a positive number, not {raw!r}.")
    return value
