"""Processes of a benchmark run: Redis, the fake Anthropic API, the bench databases, daphne.

Every child runs in its own process group (a terminal Ctrl+C reaches only the bench, which then
stops them in order) and gets SIGTERM if the bench dies. `Stack.close()` stops everything.

Chatsite's code can come from another tree (`Code`: a baseline build in a temporary git
worktree); each tree gets its own database, migrated and seeded by its own code.
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR / "scripts"))
from redis_env import EmbeddedRedis, die_with_parent, ensure_redis, free_port  # noqa: E402

BIN_DIR = Path(sys.executable).parent
STOP_TIMEOUT = 5.0
FAKE_READY_PREFIX = "FAKE_ANTHROPIC_LISTENING "
PG_URL = "postgres://postgres@127.0.0.1:5432/chatsite_bench"


class StackError(RuntimeError):
    pass


@dataclass
class Code:
    """A tree of Chatsite's code the bench runs: this one, or a baseline build."""

    label: str
    root: Path
    database_url: str = ""
    staff: str = ""  # a staff session in its database (for the ops page)


@dataclass
class Child:
    name: str
    process: subprocess.Popen
    log_path: Path | None = None
    port: int = 0

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def _stop(child: Child) -> None:
    if child.process.poll() is None:
        try:
            os.killpg(child.process.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            child.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass
    try:  # also whatever the child left behind in its group
        os.killpg(child.process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    child.process.wait()


class Stack:
    def __init__(self, db: str = "sqlite") -> None:
        self.db = db
        self.tmpdir = Path(tempfile.mkdtemp(prefix="chatsite-bench-"))
        self.children: list[Child] = []
        self.redis: EmbeddedRedis | None = None
        self.redis_url = ""
        self.redis_description = ""
        self.fake_url = ""
        self.fake_pid: int | None = None
        self._pg_admin_url = urlunsplit(("postgresql", urlsplit(PG_URL).netloc, "/postgres", "", ""))
        self._pg_databases: list[str] = []
        # Seconds between two delta frames of a stream, for Chatsite and the bare relay alike.
        self.batch_seconds = 0.04
        self.token = secrets.token_hex(4)
        self.secret_key = "bench-" + secrets.token_urlsafe(32)
        self.prefix = f"chatsite-bench-{os.getpid()}-{self.token}"

    # --- processes -------------------------------------------------------------------------

    def spawn(self, name: str, argv: list[str], env: dict[str, str], *, log: bool = True, cwd: Path = BASE_DIR, **kwargs) -> Child:
        log_path = self.tmpdir / f"{name.replace(' ', '-')}-{len(self.children)}.log" if log else None
        out = open(log_path, "wb") if log_path else kwargs.pop("stdout")  # noqa: SIM115
        try:
            process = subprocess.Popen(
                argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT if log_path else kwargs.pop("stderr", None),
                start_new_session=True, preexec_fn=die_with_parent, **kwargs,
            )  # fmt: skip
        finally:
            if log_path:
                out.close()
        child = Child(name, process, log_path)
        self.children.append(child)
        return child

    def stop(self, child: Child) -> None:
        _stop(child)
        if child in self.children:
            self.children.remove(child)

    def base_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BASE_DIR), env.get("PYTHONPATH")]))
        return env

    def chatsite_env(self, code: Code) -> dict[str, str]:
        """The environment of Chatsite's processes from `code`'s tree (only that tree importable)."""
        env = self.base_env()
        others = [p for p in (os.environ.get("PYTHONPATH") or "").split(os.pathsep) if p and Path(p).resolve() != BASE_DIR]
        env["PYTHONPATH"] = os.pathsep.join([str(code.root), *others])
        env.update(
            DJANGO_SETTINGS_MODULE="chatsite.settings",
            DEBUG="0",
            SECRET_KEY=self.secret_key,
            ALLOWED_HOSTS="127.0.0.1,localhost",
            ANTHROPIC_BASE_URL=self.fake_url,
            ANTHROPIC_API_KEY="bench",
            REDIS_URL=self.redis_url,
            CHANNEL_LAYER_PREFIX=self.prefix,
            DATABASE_URL=code.database_url,
            CHATSITE_COUNT_DB_WRITES="1",
            CHATSITE_DELTA_BATCH_SECONDS=f"{self.batch_seconds:g}",
        )
        return env

    # --- services --------------------------------------------------------------------------

    def start_redis(self) -> None:
        preferred = os.environ.get("REDIS_URL") or None
        self.redis_url, self.redis, self.redis_description = ensure_redis(preferred, data_dir=self.tmpdir / "redis")

    def start_fake(self, timeout: float = 20.0) -> None:
        argv = [sys.executable, "-m", "fakeanthropic", "--host", "127.0.0.1", "--port", "0", "--quiet"]
        child = self.spawn("fake", argv, self.base_env(), log=False, stdout=subprocess.PIPE, text=True, bufsize=1)
        lines: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:
            assert child.process.stdout is not None
            for line in child.process.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, daemon=True, name="fake-stdout").start()
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise StackError("the fake Anthropic server printed no ready line") from None
            if line is None:
                raise StackError(f"the fake Anthropic server exited with {child.process.wait()}")
            if line.startswith(FAKE_READY_PREFIX):
                self.fake_url = line[len(FAKE_READY_PREFIX):].strip()
                self.fake_pid = child.pid
                return

    def fake_call(self, method: str, path: str, payload: object = None) -> object:
        data = None if payload is None else json.dumps(payload).encode()
        req = urllib.request.Request(self.fake_url + path, data=data, method=method, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read() or b"null")

    def script_fake(self, n: int, deltas: int, interval_ms: float) -> None:
        self.fake_call("POST", "/_fake/reset", {})
        self.fake_call("POST", "/_fake/script", {"replies": [{"stamp": True, "deltas": deltas, "delta_interval_ms": interval_ms, "repeat": n}]})

    def create_database(self, suffix: str = "") -> str:
        """A fresh, empty bench database; its URL."""
        if self.db == "sqlite":
            return f"sqlite:///{self.tmpdir / f'bench{suffix}.sqlite3'}"
        import psycopg

        parts = urlsplit(PG_URL)
        dbname = parts.path.lstrip("/") + suffix
        try:
            with psycopg.connect(self._pg_admin_url, autocommit=True, connect_timeout=10) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
                conn.execute(f'CREATE DATABASE "{dbname}"')
        except psycopg.Error as exc:
            raise StackError(f"could not create {dbname} on {parts.hostname}: {exc}") from None
        self._pg_databases.append(dbname)
        return urlunsplit((parts.scheme, parts.netloc, "/" + dbname, "", ""))

    def drop_databases(self) -> None:
        if not self._pg_databases:
            return
        import psycopg

        while self._pg_databases:
            dbname = self._pg_databases.pop()
            with psycopg.connect(self._pg_admin_url, autocommit=True, connect_timeout=10) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')

    def prepare(self, code: Code, suffix: str = "") -> None:
        """Give `code` a database of its own, migrated by its own code, with a staff session."""
        code.database_url = self.create_database(suffix)
        result = subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput"], cwd=code.root, env=self.chatsite_env(code),
            stdin=subprocess.DEVNULL, capture_output=True, text=True,
        )  # fmt: skip
        if result.returncode != 0:
            raise StackError(f"migrate failed ({code.label}):\n{result.stdout}{result.stderr}")
        seeded = self.seed(code, staff=f"bench-staff-{self.token}")
        if Path(seeded["code_root"]) != code.root.resolve():  # the tree's own code, not another's
            raise StackError(f"{code.label}: Chatsite's code was imported from {seeded['code_root']}, not {code.root}")
        code.staff = seeded["staff"]

    def seed(self, code: Code, *, staff: str | None = None, clients: tuple[str, int] | None = None) -> dict:
        """Users, sessions and conversations in `code`'s database, written by `code`'s own
        models (bench/seed.py run from its tree)."""
        argv = [sys.executable, str(BASE_DIR / "bench" / "seed.py")]
        if staff:
            argv += ["--staff", staff]
        if clients:
            argv += ["--clients", clients[0], str(clients[1])]
        result = subprocess.run(argv, cwd=code.root, env=self.chatsite_env(code), stdin=subprocess.DEVNULL, capture_output=True, text=True)
        line = next((x for x in result.stdout.splitlines() if x.startswith("SEED_RESULT ")), None)
        if result.returncode != 0 or line is None:
            raise StackError(f"seeding failed ({code.label}):\n{result.stdout[-2000:]}{result.stderr[-4000:]}")
        return json.loads(line[len("SEED_RESULT "):])

    def start_daphne(self, name: str, app: str, env: dict[str, str], profile: Path | None = None, timeout: float = 60.0,
                     cwd: Path = BASE_DIR) -> Child:
        port = free_port()
        if profile is not None:
            argv = [sys.executable, "-m", "bench.profiled_daphne", str(profile)]
        else:
            argv = [str(BIN_DIR / "daphne")]
        argv += ["-b", "127.0.0.1", "-p", str(port), app]
        child = self.spawn(name, argv, env, cwd=cwd)
        child.port = port
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if child.process.poll() is not None:
                raise StackError(f"{name} exited with {child.process.returncode}:\n{child.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return child
            except OSError:
                time.sleep(0.1)
        raise StackError(f"{name} did not listen on {port} within {timeout:.0f} s:\n{child.log_tail()}")

    # --- teardown --------------------------------------------------------------------------

    def close(self) -> None:
        for child in reversed(self.children):
            _stop(child)
        self.children.clear()
        if self.redis is not None:
            self.redis.stop()
            self.redis = None
        try:
            self.drop_databases()
        except Exception as exc:  # noqa: BLE001 - cleanup must go on
            print(f"bench: could not drop the bench database: {exc}", file=sys.stderr)
        shutil.rmtree(self.tmpdir, ignore_errors=True)
