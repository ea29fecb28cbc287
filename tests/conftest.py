from __future__ import annotations

import asyncio
import json
import os
import uuid
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.test import Client

from tests.fakeserver import FakeAnthropicProcess


@pytest.fixture(autouse=True)
def _model_catalog(request):
    """Every test with a database gets the seeded Claude models.

    The seeding migration runs once; transactional tests flush the tables after themselves,
    so the catalogue is put back (idempotently) before each test that uses the database.
    """
    from conversations import catalog, modelcache

    modelcache.clear()
    marker = request.node.get_closest_marker("django_db")
    fixtures = set(request.fixturenames)
    if marker is None and not {"db", "transactional_db", "live_server"} & fixtures:
        yield
        return
    transactional = "transactional_db" in fixtures or "live_server" in fixtures or bool(marker and marker.kwargs.get("transaction"))
    request.getfixturevalue("transactional_db" if transactional else "db")
    from conversations.models import LLMModel

    catalog.seed(LLMModel)
    yield
    modelcache.clear()


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """pytest-django's, plus: close the PostgreSQL connection pool before the test database is
    dropped (its idle connections would otherwise keep the database busy)."""
    yield
    from django.db import connections

    with django_db_blocker.unblock():
        for connection in connections.all():
            if getattr(connection, "pool", None) is not None:
                connection.close_pool()


@pytest.fixture(scope="session")
def fake_anthropic():
    """The project's fake Anthropic API in a subprocess; the real SDK talks to it over HTTP."""
    fake = FakeAnthropicProcess(tps=400).start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def celery_worker(request, fake_anthropic, django_db_setup, django_db_blocker):
    """A real Celery worker (subprocess) on the run's queue, the test database and the fake.

    One per test module. Settings a module lists in `CELERY_WORKER_SETTINGS` (env names and
    string values) go to the worker's environment; the module must give the test process the
    same values. Tests using it must be `django_db(transaction=True)`: the worker only sees
    committed rows.
    """
    from django.conf import settings
    from django.db import connection

    from tests.celeryworker import CeleryWorker, database_url

    if not settings.CELERY_BROKER_URL.startswith("redis"):
        pytest.fail("The Celery worker tests need REDIS_URL: run them through scripts/runtests.py (make test).")
    env = {
        "DATABASE_URL": database_url(connection.settings_dict),
        "ANTHROPIC_BASE_URL": fake_anthropic.url,
        "ANTHROPIC_API_KEY": "test-key",
        "ANTHROPIC_MAX_RETRIES": "2",
        "ANTHROPIC_TIMEOUT": "20",
        # A killed worker's task comes back after this; its claims are taken over because the
        # new worker sees their holder's process is gone, not because they went stale.
        "CHATSITE_CELERY_VISIBILITY_TIMEOUT": "4",
        "CHATSITE_COMPACTION_CLAIM_SECONDS": "300",
        **getattr(request.module, "CELERY_WORKER_SETTINGS", {}),
    }
    worker = CeleryWorker(redis_url=settings.CELERY_BROKER_URL, queue=settings.CELERY_TASK_DEFAULT_QUEUE, env=env)
    try:
        # Titles and compactions other tests enqueued are for rows that no longer exist.
        worker.purge()
        worker.start()
        yield worker
    finally:
        worker.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A failing test that used the worker shows what the worker logged meanwhile."""
    report = yield
    worker = getattr(item, "funcargs", {}).get("celery_worker")
    if worker is not None:
        if call.when == "setup":
            item.stash[_WORKER_LOG_OFFSET] = worker.log_size()
        elif report.failed:
            text = worker.log_text(since=item.stash.get(_WORKER_LOG_OFFSET, 0))
            report.sections.append(("Celery worker log", text[-20_000:] or "(nothing)"))
    return report


_WORKER_LOG_OFFSET = pytest.StashKey[int]()


@pytest.fixture
def llm(fake_anthropic, settings):
    """Point the app's Anthropic client at the fake, with fast test timings."""
    from conversations import llm as llm_module

    settings.ANTHROPIC_BASE_URL = fake_anthropic.url
    settings.ANTHROPIC_API_KEY = "test-key"
    settings.ANTHROPIC_MAX_RETRIES = 2
    settings.ANTHROPIC_TIMEOUT = 10.0
    settings.CHATSITE_CHECKPOINT_SECONDS = 0.2
    settings.CHATSITE_DELTA_BATCH_SECONDS = 0.02
    settings.CHATSITE_RETRY_BUDGET_SECONDS = 3.0
    llm_module.reset_clients()
    yield fake_anthropic
    llm_module.reset_clients()


@pytest.fixture
def token() -> str:
    """A unique marker to route a scripted reply to this test's request only."""
    return f"tok-{uuid.uuid4().hex[:12]}"


def _make_user(username: str):
    return get_user_model().objects.create_user(username=username, password=f"{username}-pass-123", email=f"{username}@example.com")


@pytest.fixture
def conversation(alice):
    from conversations import services

    return services.conversation_create(owner=alice)


@pytest.fixture
def alice(db):
    return _make_user("alice")


@pytest.fixture
def bob(db):
    return _make_user("bob")


@pytest.fixture
def charlie(db):
    return _make_user("charlie")


def session_cookie_for(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


class Socket:
    """A WebsocketCommunicator on the real ASGI app (origin check + session auth included)."""

    def __init__(self, user, conversation_id: int, origin: str = "http://localhost", *, cookie: str | None = None) -> None:
        self.user = user
        self.conversation_id = conversation_id
        self.origin = origin
        self.cookie = cookie  # a session of the test's own (else a new one for `user`)
        self.comm = None
        self.frames: list[dict[str, Any]] = []
        self.accepted = False  # the handshake was accepted (a refused socket is accepted, then closed)

    async def connect(self) -> tuple[bool, int | None]:
        """(True, None) when the socket opened and said hello; (False, close code) when it was
        refused, whether in the handshake (a foreign origin) or just after (4401, 4404)."""
        from channels.testing import WebsocketCommunicator

        from chatsite.asgi import application

        headers = [(b"origin", self.origin.encode()), (b"host", b"localhost")]
        cookie = self.cookie
        if cookie is None and self.user is not None:
            cookie = await sync_to_async(session_cookie_for)(self.user)
        if cookie is not None:
            headers.append((b"cookie", f"sessionid={cookie}".encode()))
        self.comm = WebsocketCommunicator(application, f"/ws/conversations/{self.conversation_id}/", headers=headers)
        connected, code = await self.comm.connect(timeout=5)
        self.accepted = connected
        if connected:
            first = await self.comm.receive_output(timeout=5)
            if first["type"] == "websocket.close":
                connected, code = False, first.get("code")
            else:
                hello = json.loads(first["text"])
                self.frames.append(hello)
                assert hello["type"] == "hello"
        if not connected:
            # Let the refused consumer finish (its channel-layer receive would outlive the test).
            await self.comm.disconnect()
            self.comm = None
        return connected, code

    async def send(self, frame: dict[str, Any]) -> None:
        await self.comm.send_to(text_data=json.dumps(frame))

    async def receive(self, timeout: float = 10) -> dict[str, Any]:
        frame = json.loads(await self.comm.receive_from(timeout=timeout))
        self.frames.append(frame)
        return frame

    async def receive_type(self, kind: str, timeout: float = 10) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            frame = await self.receive(timeout=max(0.01, deadline - loop.time()))
            if frame["type"] == kind:
                return frame

    async def follow_to_end(self, generation_id: str, timeout: float = 20, have: str = "") -> tuple[str, dict[str, Any]]:
        """Apply delta frames by offset (as the browser does) until the generation's end frame.

        Frames this socket already received are applied first, then new ones as they come.
        """
        text = have
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        backlog = list(self.frames)
        while True:
            frame = backlog.pop(0) if backlog else await self.receive(timeout=max(0.01, deadline - loop.time()))
            if frame.get("generation_id") != generation_id:
                continue
            if frame["type"] == "delta":
                offset = frame["offset"]
                assert offset <= len(text), f"gap: have {len(text)}, frame starts at {offset}"
                text = text[:offset] + frame["text"] if offset + len(frame["text"]) > len(text) else text
            elif frame["type"] == "generation.end":
                return text, frame

    async def send_message(self, content: str, client_id: str = "c1") -> dict[str, Any]:
        """Send a chat message; return the server's `message.created` acknowledgement."""
        await self.send({"type": "send", "content": content, "client_id": client_id})
        created = await self.receive_type("message.created")
        assert created["client_id"] == client_id
        return created

    async def closed_with(self, timeout: float = 10) -> int | None:
        """Wait for the server to close the socket (skipping frames); its close code."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            output = await self.comm.receive_output(timeout=max(0.01, deadline - loop.time()))
            if output["type"] == "websocket.close":
                return output.get("code")
            self.frames.append(json.loads(output["text"]))

    async def close(self) -> None:
        if self.comm is not None:
            await self.comm.disconnect()


async def stored_message(pk: int):
    from conversations.models import Message

    return await sync_to_async(Message.objects.get)(pk=pk)


@pytest.fixture
async def hub_cleanup():
    """A fresh channel layer per test loop; cancel the hub's tasks after, so nothing leaks.

    channels-redis keeps receive state (locks, buffers) bound to the loop that first used it.
    """
    from channels.layers import channel_layers

    channel_layers.backends.clear()
    yield
    from conversations import hub

    h = hub._hubs.get(id(asyncio.get_running_loop()))
    if h is not None:
        await h.close()


def pytest_sessionfinish(session, exitstatus):
    """pytest-django drops the SQLite test database file but not its WAL/SHM companions."""
    from django.conf import settings

    name = settings.DATABASES["default"].get("TEST", {}).get("NAME")
    if name and settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
        for suffix in ("", "-wal", "-shm", "-journal"):
            try:
                os.remove(f"{name}{suffix}")
            except OSError:
                pass


# --- Browser tests ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def live_stack(fake_anthropic):
    """Chatsite as in production (daphne subprocess, its own database) on the fake; one per
    module. A module overrides this fixture to start it with other settings."""
    from tests.livestack import LiveStack

    stack = LiveStack(anthropic_url=fake_anthropic.url).start()
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium through Playwright (never `playwright install`).

    Every context it opens reports Content-Security-Policy violations (Chromium logs each one
    to the console) to `_csp_violations`, and a test during which one happened fails.
    """
    from playwright.sync_api import sync_playwright

    from tests.browser import CHROMIUM, CHROMIUM_ARGS

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        new_context = browser.new_context

        def watched_context(*args, **kwargs):
            context = new_context(*args, **kwargs)
            context.on("console", _record_csp_violation)
            return context

        browser.new_context = watched_context
        browser.new_page = lambda *args, **kwargs: watched_context(*args, **kwargs).new_page()
        yield browser
        browser.close()


_csp_violations: list[str] = []


def _record_csp_violation(message) -> None:
    if "Content Security Policy" in message.text:
        _csp_violations.append(f"{message.page.url if message.page else '?'}: {message.text}")


@pytest.fixture(autouse=True)
def _no_csp_violations(request):
    """A browser test fails if the page broke the site's Content-Security-Policy."""
    if "browser" not in request.fixturenames:
        yield
        return
    _csp_violations.clear()
    yield
    violations, _csp_violations[:] = list(_csp_violations), []
    assert not violations, "Content-Security-Policy violations:\n" + "\n".join(violations)


def clear_default_cache() -> None:
    """Forget rate-limit and log-in counters: this run's keys only. (On Redis, cache.clear()
    would FLUSHDB the database the channel layer and Celery of other runs also use.)"""
    from django.conf import settings
    from django.core.cache import cache

    if not settings.CACHES["default"]["BACKEND"].endswith("RedisCache"):
        cache.clear()
        return
    client = cache._cache.get_client(write=True)
    keys = list(client.scan_iter(match=f"{settings.CACHE_KEY_PREFIX}:*", count=1000))
    if keys:
        client.delete(*keys)



def pytest_collection_modifyitems(config, items):
    """The browser tests (tests/test_browser*.py) carry the `browser` marker, so that
    `-m browser` or `-m "not browser"` can pick them."""
    for item in items:
        if item.path.name.startswith("test_browser"):
            item.add_marker(pytest.mark.browser)
