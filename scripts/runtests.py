"""`make test`: run pytest against a real Redis (the configured one, or an embedded one).

Nothing is skipped for lack of Redis. Extra arguments go to pytest unchanged
(`make test ARGS="-k stream -x"`), and pytest's exit code is ours.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from devserver import describe_database, load_dotenv  # noqa: E402
from redis_env import ensure_redis  # noqa: E402

BASE_DIR = Path(__file__).resolve().parent.parent
# Database 1 of a shared local Redis: a `make run` worker on database 0 must not consume the
# Celery tasks the tests enqueue (channel groups are kept apart by CHANNEL_LAYER_PREFIX).
TEST_REDIS_URL = "redis://127.0.0.1:6379/1"
TEST_SECRET_KEY = "chatsite-tests-only-not-a-secret"


def say(message: str) -> None:
    print(f"runtests: {message}", flush=True)


def test_env(redis_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        REDIS_URL=redis_url,
        CHANNEL_LAYER_PREFIX=f"chatsite-test-{os.getpid()}",
        # Tasks the tests enqueue go to a queue of this run only; the worker tests consume it.
        CHATSITE_CELERY_QUEUE=f"chatsite-test-{os.getpid()}",
        # Rate-limit counters of this run only (the default cache is Redis).
        CHATSITE_CACHE_PREFIX=f"chatsite-test-{os.getpid()}",
        SECRET_KEY=TEST_SECRET_KEY,
        DJANGO_SETTINGS_MODULE="chatsite.settings",
        # Close PostgreSQL connections after each use: the runner's worker threads would
        # otherwise hold them open and block dropping the test database at the end.
        CONN_MAX_AGE="0",
    )
    database_url = env.get("DATABASE_URL", "")
    if database_url.startswith("postgres"):
        # A test database of this run only: runs side by side on one server don't clobber
        # each other's, and it is dropped at the end (see drop_test_database).
        env["CHATSITE_TEST_DB_NAME"] = f"test_{urlsplit(database_url).path.lstrip('/') or 'chatsite'}_{os.getpid()}"
    return env


def drop_test_database(env: dict[str, str]) -> None:
    """Drop this run's PostgreSQL test database, even if a straggling connection holds it."""
    name = env.get("CHATSITE_TEST_DB_NAME")
    if not name:
        return
    try:
        import psycopg

        parts = urlsplit(env["DATABASE_URL"])
        admin_url = urlunsplit(("postgresql", parts.netloc, "/postgres", parts.query, ""))
        with psycopg.connect(admin_url, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except Exception as exc:  # the run's result matters more than the cleanup
        say(f"could not drop the test database {name}: {exc}")


def run_pytest(args: list[str], env: dict[str, str]) -> int:
    process = subprocess.Popen([sys.executable, "-m", "pytest", *args], cwd=BASE_DIR, env=env)

    def forward(signum: int, _frame: FrameType | None) -> None:
        process.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    while True:
        try:
            return process.wait()
        except KeyboardInterrupt:
            # The terminal sent Ctrl+C to pytest too; let it report and exit on its own.
            continue


def forget_queue(redis_url: str, queue: str) -> None:
    """Delete the run's Celery queue from Redis: tasks nobody consumed (titles and compactions
    enqueued by tests without a worker), the test worker's unacknowledged-message keys
    (`<queue>.unacked…`, see tests/celery_worker_app.py) and the queue's bindings."""
    import redis

    client = redis.Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=5)
    try:
        keys = [queue, *(f"{queue}\x06\x16{p}" for p in (3, 6, 9)), f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}"]
        escaped = "".join(f"\\{c}" if c in "*?[]\\" else c for c in queue)
        keys += client.scan_iter(match=f"{escaped}.*", count=1000)
        client.delete(*keys)
    except (redis.RedisError, OSError) as exc:
        say(f"could not delete queue {queue} from Redis: {exc}")
    finally:
        client.close()


def main(args: list[str]) -> int:
    load_dotenv()
    url, embedded, redis_description = ensure_redis(os.environ.get("REDIS_URL") or TEST_REDIS_URL)
    try:
        say(f"database: {describe_database(os.environ.get('DATABASE_URL'))} (tests get their own test database)")
        say(f"redis:    {redis_description}")
        env = test_env(url)
        try:
            return run_pytest(args, env)
        finally:
            forget_queue(url, env["CHATSITE_CELERY_QUEUE"])
            drop_test_database(env)
    finally:
        if embedded is not None:
            embedded.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
