"""`make run`: Chatsite on this machine with one command.

Loads .env, keeps a SECRET_KEY in var/, finds or embeds a Redis, starts the fake Anthropic
server when there is no API key, migrates, ensures the demo/admin logins, then runs daphne and
a Celery worker (with embedded beat) and supervises them. Ctrl+C or SIGTERM stops every
process it started; if one dies, the rest are stopped and the exit code is 1.
"""

from __future__ import annotations

import os
import queue
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import environ

sys.path.insert(0, str(Path(__file__).resolve().parent))
from redis_env import EmbeddedRedis, die_with_parent, ensure_redis  # noqa: E402

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"
# Not resolved: .venv/bin/python is a symlink and its console scripts live beside it.
BIN_DIR = Path(sys.executable).parent
STOP_TIMEOUT = 5.0
PORT_SPAN = 20
FAKE_READY_PREFIX = "FAKE_ANTHROPIC_LISTENING "


class StartupError(Exception):
    """Something the person must fix; printed without a traceback."""


class Shutdown(BaseException):
    """Raised by the SIGINT/SIGTERM handler so every wait unwinds into the cleanup."""


@dataclass
class Child:
    name: str
    process: subprocess.Popen[str]


@dataclass
class Stack:
    """Everything started so far, in start order."""

    children: list[Child] = field(default_factory=list)
    redis: EmbeddedRedis | None = None


# --- small helpers ---------------------------------------------------------------------------


def say(message: str) -> None:
    print(f"devserver: {message}", flush=True)


def load_dotenv() -> None:
    """Same parser as settings.py; variables already in the environment win."""
    path = BASE_DIR / ".env"
    if path.exists():
        environ.Env.read_env(str(path), overwrite=False)


def read_or_create_secret(path: Path, size: int) -> str:
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(size)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value


def ensure_secret_key() -> None:
    if not os.environ.get("SECRET_KEY"):
        os.environ["SECRET_KEY"] = read_or_create_secret(VAR_DIR / "secret_key", 50)


def describe_database(url: str | None) -> str:
    """Engine and name/host of DATABASE_URL, never its password."""
    if not url:
        return "SQLite (default) at var/db.sqlite3"
    try:
        config = environ.Env.db_url_config(url)
    except Exception:
        return "DATABASE_URL (unrecognised scheme)"
    engine = str(config["ENGINE"]).rsplit(".", 1)[-1]
    if engine == "sqlite3":
        return f"SQLite at {config['NAME']}"
    names = {"postgresql": "PostgreSQL", "mysql": "MySQL", "oracle": "Oracle"}
    where = f"{config.get('HOST') or 'localhost'}:{config.get('PORT') or 'default port'}"
    user = f" as {config['USER']}" if config.get("USER") else ""
    return f"{names.get(engine, engine)} database '{config['NAME']}' on {where}{user}"


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BASE_DIR), env.get("PYTHONPATH")]))
    return env


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Like Twisted: TIME_WAIT leftovers of the previous run must not count as busy.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def pick_port() -> int:
    raw = os.environ.get("PORT", "8000")
    try:
        preferred = int(raw)
    except ValueError:
        raise StartupError(f"PORT={raw!r} is not a number") from None
    for port in range(preferred, preferred + PORT_SPAN + 1):
        if port_is_free(port):
            if port != preferred:
                say(f"port {preferred} is busy; using {port} instead")
            return port
    raise StartupError(f"ports {preferred}-{preferred + PORT_SPAN} are all busy; set PORT=...")


def accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


# --- children --------------------------------------------------------------------------------


def spawn(stack: Stack, name: str, argv: list[str], env: dict[str, str], **kwargs: object) -> Child:
    process = subprocess.Popen(
        argv,
        cwd=BASE_DIR,
        env=env,
        stdin=subprocess.DEVNULL,
        # Own process group: the terminal's Ctrl+C reaches only us, and we stop children in
        # order (web and worker before the Redis they use); killpg reaches grandchildren.
        start_new_session=True,
        preexec_fn=die_with_parent,
        text=True,
        **kwargs,  # type: ignore[arg-type]
    )
    child = Child(name, process)
    stack.children.append(child)
    return child


def signal_group(child: Child, sig: signal.Signals) -> None:
    try:
        os.killpg(child.process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop_children(children: list[Child]) -> None:
    """SIGTERM each group, wait up to STOP_TIMEOUT in total, then SIGKILL what is left."""
    for child in children:
        signal_group(child, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    for child in children:
        try:
            child.process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            say(f"{child.name} did not stop within {STOP_TIMEOUT:.0f} s; killing it")
        # Also kills grandchildren (Celery's pool, its beat) that outlived their parent.
        signal_group(child, signal.SIGKILL)
        child.process.wait()


def stop_stack(stack: Stack) -> None:
    # Redis goes last: a Celery worker's warm shutdown still talks to its broker.
    stop_children(stack.children)
    if stack.redis is not None:
        stack.redis.stop()


def first_dead(children: list[Child]) -> Child | None:
    return next((c for c in children if c.process.poll() is not None), None)


def monitored(stack: Stack) -> list[Child]:
    children = list(stack.children)
    if stack.redis is not None and stack.redis.process is not None:
        children.append(Child("embedded Redis", stack.redis.process))  # type: ignore[arg-type]
    return children


def died_message(child: Child) -> str:
    code = child.process.returncode
    if code is not None and code < 0:
        return f"{child.name} was killed by {signal.Signals(-code).name} (exit code {code})"
    return f"{child.name} exited unexpectedly with code {code}"


# --- steps -----------------------------------------------------------------------------------


def setup_redis(stack: Stack, env: dict[str, str]) -> str:
    configured = os.environ.get("REDIS_URL") or None
    try:
        url, stack.redis, description = ensure_redis(configured)
    except RuntimeError as error:
        raise StartupError(str(error)) from None
    if configured and stack.redis is not None:
        say(f"REDIS_URL={configured} does not answer; using an embedded Redis instead")
    env["REDIS_URL"] = url
    return description


def read_fake_url(child: Child, timeout: float = 20.0) -> str:
    """The fake prints one ready line; anything after it is passed through to our stdout."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert child.process.stdout is not None
        ready_seen = False
        for line in child.process.stdout:
            if not ready_seen and line.startswith(FAKE_READY_PREFIX):
                ready_seen = True
                lines.put(line[len(FAKE_READY_PREFIX) :].strip())
            else:
                print(f"[fakeanthropic] {line}", end="", flush=True)
        lines.put(None)

    threading.Thread(target=pump, name="fake-stdout", daemon=True).start()
    try:
        url = lines.get(timeout=timeout)
    except queue.Empty:
        raise StartupError(f"the fake Anthropic server printed no ready line in {timeout:.0f} s") from None
    if url is None:
        child.process.wait()
        raise StartupError(died_message(child))
    return url


def setup_model(stack: Stack, env: dict[str, str]) -> str:
    if os.environ.get("ANTHROPIC_API_KEY"):
        base = os.environ.get("ANTHROPIC_BASE_URL")
        return "Anthropic API (key set)" + (f" via {base}" if base else "")
    argv = [sys.executable, "-m", "fakeanthropic", "--host", "127.0.0.1", "--port", "0", "--quiet"]
    child = spawn(stack, "fake Anthropic server", argv, env, stdout=subprocess.PIPE, bufsize=1)
    url = read_fake_url(child)
    env["ANTHROPIC_BASE_URL"] = url
    env["CHATSITE_OFFLINE_DEMO"] = "1"
    return f"offline demo model (fake Anthropic server at {url})"


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
    )


def manage_or_fail(env: dict[str, str], *args: str) -> str:
    result = manage(env, *args)
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()
        raise StartupError(f"manage.py {' '.join(args)} failed:\n{output}")
    return result.stdout


def recover_generations(env: dict[str, str]) -> None:
    """Tolerant: the command may not exist yet, and a failure here must not block startup."""
    # `make run` starts every process itself, so any reply still "streaming" is an orphan.
    result = manage(env, "recover_generations", "--all")
    if result.returncode == 0:
        if result.stdout.strip():
            say(result.stdout.strip())
    elif "Unknown command" in result.stderr:
        say("warning: manage.py recover_generations does not exist yet; skipped")
    else:
        say(f"warning: manage.py recover_generations failed (code {result.returncode}):")
        print(result.stderr.strip(), file=sys.stderr, flush=True)


def parse_logins(output: str) -> dict[str, tuple[str, str]]:
    """`DEMO_LOGIN demo pw` lines → {"DEMO_LOGIN": ("demo", "pw")}."""
    logins: dict[str, tuple[str, str]] = {}
    for line in output.splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[0].endswith("_LOGIN"):
            logins[parts[0]] = (parts[1], parts[2])
    return logins


def prepare_database(env: dict[str, str]) -> dict[str, tuple[str, str]]:
    say("migrating the database…")
    manage_or_fail(env, "migrate", "--noinput")
    logins = parse_logins(manage_or_fail(env, "ensure_demo_user"))
    recover_generations(env)
    return logins


def start_servers(stack: Stack, env: dict[str, str], port: int) -> None:
    daphne = [str(BIN_DIR / "daphne"), "-b", "127.0.0.1", "-p", str(port), "chatsite.asgi:application"]
    spawn(stack, "daphne (web)", daphne, env)
    celery = [
        str(BIN_DIR / "celery"), "-A", "chatsite", "worker", "-B", "--loglevel=WARNING",
        "--concurrency=2", "--schedule", str(VAR_DIR / "celerybeat-schedule"),
    ]  # fmt: skip
    spawn(stack, "celery worker", celery, env)


def wait_until_serving(stack: Stack, port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dead = first_dead(monitored(stack))
        if dead is not None:
            raise StartupError(died_message(dead))
        if accepts_connections(port):
            return
        time.sleep(0.1)
    raise StartupError(f"daphne did not accept connections on port {port} within {timeout:.0f} s")


def banner(url: str, logins: dict[str, tuple[str, str]], database: str, redis: str, model: str) -> str:
    demo = logins.get("DEMO_LOGIN", ("demo", "?"))
    admin = logins.get("ADMIN_LOGIN", ("admin", "?"))
    rule = "=" * 72
    return "\n".join(
        [
            rule,
            f"  Chatsite is ready: {url}",
            f"  Demo login:   {demo[0]} / {demo[1]}",
            f"  Admin login:  {admin[0]} / {admin[1]}   ({url}admin/)",
            f"  Database:     {database}",
            f"  Redis:        {redis}",
            f"  Model/API:    {model}",
            "  Ctrl+C stops everything.",
            rule,
        ]
    )


def supervise(stack: Stack) -> int:
    while True:
        dead = first_dead(monitored(stack))
        if dead is not None:
            say(f"{died_message(dead)}; stopping the rest")
            return 1
        time.sleep(0.3)


def run(stack: Stack) -> int:
    load_dotenv()
    ensure_secret_key()
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    env = child_env()
    redis = setup_redis(stack, env)
    model = setup_model(stack, env)
    logins = prepare_database(env)
    port = pick_port()
    start_servers(stack, env, port)
    wait_until_serving(stack, port)
    url = f"http://127.0.0.1:{port}/"
    print(banner(url, logins, describe_database(os.environ.get("DATABASE_URL")), redis, model), flush=True)
    return supervise(stack)


def on_signal(signum: int, _frame: FrameType | None) -> None:
    raise Shutdown(signal.Signals(signum).name)


def main() -> int:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    stack = Stack()
    code = 0
    try:
        code = run(stack)
    except Shutdown as stop:
        say(f"{stop} received")
    except StartupError as error:
        say(f"error: {error}")
        code = 1
    finally:
        # A second Ctrl+C must not interrupt the cleanup; it is bounded by STOP_TIMEOUT.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        say("stopping…")
        stop_stack(stack)
        say("stopped")
    return code


if __name__ == "__main__":
    sys.exit(main())
