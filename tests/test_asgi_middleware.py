"""The HTTP middleware chain runs on the event loop: no middleware is adapted to a thread.

A sync-only middleware makes Django run the whole chain in its one thread-sensitive thread,
so an async view that waits (the API's send-and-wait) would hold every other HTTP request of
the process behind it.
"""

import logging

from django.core.handlers.asgi import ASGIHandler
from django.test import AsyncClient


def test_no_middleware_is_adapted_to_sync(caplog, settings):
    settings.DEBUG = True  # Django logs each adaptation only in debug mode
    with caplog.at_level(logging.DEBUG, logger="django.request"):
        ASGIHandler()
    adapted = [r.getMessage() for r in caplog.records if "handler adapted" in r.getMessage()]
    assert adapted == []


async def test_static_files_are_still_served_by_whitenoise():
    response = await AsyncClient().get("/static/chatsite/chat.js")
    assert response.status_code == 200
    body = b"".join(response.streaming_content) if response.streaming else response.content
    assert b"WebSocket" in body
