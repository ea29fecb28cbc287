"""A websocket that closes (4401) as soon as the session it was opened with ends.

Mixed into the chat consumer. The socket checks its session (accounts.sessions.session_state)
right after it opens, when the session expires, every CHATSITE_SOCKET_SESSION_CHECK_SECONDS,
and whenever something that can end sessions happens to its person (a `session.check` event
on their channel-layer group: log-out, new password, deactivation, deletion). A socket whose
session no longer logs its person in is closed with 4401; the client then shows "log in again"
and stops reconnecting. Refused sockets are accepted first and then closed, so browsers see
the code (daphne would answer a refused handshake with HTTP 403: close code 1006 in the
browser).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from django.conf import settings
from django.utils import timezone

from accounts.sessions import session_state, session_tag

from .asyncdb import request_db

log = logging.getLogger(__name__)

UNAUTHORIZED = 4401
NOT_FOUND = 4404


class SessionGuarded:
    """For an AsyncWebsocketConsumer that has `self.user` and `self.group` (the person's group)."""

    _session_tag: str = ""
    _session_watch: asyncio.Task | None = None
    _session_over = False  # closed for it: nothing goes out or comes in any more

    async def refuse(self, code: int) -> None:
        """Accept, then close with `code`: the browser's close event carries it."""
        await self.accept()  # type: ignore[attr-defined]
        await self.close(code=code)  # type: ignore[attr-defined]
        self._session_over = True  # a frame sent before the close arrives is not run

    def guard_session(self) -> None:
        """Start watching the session (call once the socket has joined the person's group)."""
        session = self.scope.get("session")  # type: ignore[attr-defined]
        self._session_key = session.session_key if session is not None else None
        self._session_tag = session_tag(self._session_key)
        self._session_watch = asyncio.get_running_loop().create_task(self._watch_session())

    def unguard_session(self) -> None:
        task, self._session_watch = self._session_watch, None
        # (not from inside the watch task itself: that would cut its own close short)
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def session_check(self, event: dict[str, Any]) -> None:
        """Something happened that may have ended the person's sessions (accounts.sessions)."""
        if event.get("ended") == self._session_tag or await self._session_user_id() != self.user.pk:  # type: ignore[attr-defined]
            await self._session_ended()

    async def _watch_session(self) -> None:
        while True:
            try:
                state = await request_db(session_state)(self._session_key)
            except Exception:  # the next event, timer or reconnect checks again
                log.exception("Session check of a websocket failed")
                state = None
            if state is not None and state.user_id != self.user.pk:  # type: ignore[attr-defined]
                await self._session_ended()
                return
            wait = settings.CHATSITE_SOCKET_SESSION_CHECK_SECONDS
            if state is not None and state.expires_at is not None:
                wait = min(wait, (state.expires_at - timezone.now()).total_seconds() + 0.5)
            await asyncio.sleep(max(wait, 0.5))
            try:  # stay in the person's group: channels-redis drops members after a day
                await asyncio.wait_for(self.channel_layer.group_add(self.group, self.channel_name),  # type: ignore[attr-defined]
                                       settings.CHATSITE_RELAY_SEND_TIMEOUT_SECONDS)
            except Exception:
                log.warning("Could not renew the group membership of %s", self.channel_name, exc_info=True)  # type: ignore[attr-defined]

    async def _session_user_id(self) -> int | None:
        try:
            return (await request_db(session_state)(self._session_key)).user_id
        except Exception:
            log.exception("Session check of a websocket failed")
            return self.user.pk  # type: ignore[attr-defined]  # (the timer checks again)

    async def _session_ended(self) -> None:
        self.unguard_session()
        if not self._session_over:
            await self.close(code=UNAUTHORIZED)  # type: ignore[attr-defined]
            self._session_over = True

    # Until the client acknowledges the close (and the consumer's disconnect runs), events of
    # the person's group still reach this consumer: none of them may go out, and no command
    # comes in.
    async def send(self, *args: Any, **kwargs: Any) -> None:
        if not self._session_over:
            await super().send(*args, **kwargs)  # type: ignore[misc]

    async def websocket_receive(self, message: dict[str, Any]) -> None:
        if not self._session_over:
            await super().websocket_receive(message)  # type: ignore[misc]
