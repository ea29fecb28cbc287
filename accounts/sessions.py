"""When a session stops logging its person in, their open websockets must stop too.

A websocket is authenticated once, when it opens. Everything that can end a session after
that tells the person's sockets (their channel-layer group) to check theirs again:

- log-out (`user_logged_out`): that one session's sockets close at once;
- a new password (change, reset, admin form, `changepassword`: any save of the user that may
  touch `password`): Django's session hash no longer matches in the other sessions;
- deactivation by any path (the admin list action, the change form's "Active" box, a shell);
- deletion of the account.

Expiry has no event: each socket re-checks when its session expires, and every
CHATSITE_SOCKET_SESSION_CHECK_SECONDS in case an event was lost (conversations.sessionguard).
The check is Django's own: `auth.get_user` on a fresh load of the session, which also ends
(flushes) a session whose password hash no longer matches.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime
from importlib import import_module
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib import auth
from django.contrib.auth.signals import user_logged_out
from django.contrib.sessions.backends.db import SessionStore as DatabaseSessionStore
from django.db import transaction
from django.db.models.signals import post_delete, post_save

from conversations import groups

log = logging.getLogger(__name__)

CHECK_EVENT = "session.check"


@dataclass(frozen=True)
class SessionState:
    user_id: int | None  # None: the session logs nobody in (any more)
    expires_at: datetime | None = None


class _SessionOnly:
    """What `auth.get_user` reads of a request: its session."""

    def __init__(self, session: Any) -> None:
        self.session = session


def session_state(session_key: str | None) -> SessionState:
    """Whom the session logs in now, and until when."""
    if not session_key:
        return SessionState(user_id=None)
    session = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    user = auth.get_user(_SessionOnly(session))  # None-safe: expired, flushed, hash mismatch, inactive, deleted
    if not user.is_authenticated:
        return SessionState(user_id=None)
    return SessionState(user_id=user.pk, expires_at=_expires_at(session))


def _expires_at(session: Any) -> datetime | None:
    if isinstance(session, DatabaseSessionStore):
        # The row's date is the real one (get_expiry_date() would say "now + cookie age").
        return session.model.objects.filter(session_key=session.session_key).values_list("expire_date", flat=True).first()
    return session.get_expiry_date()


def session_tag(session_key: str | None) -> str:
    """A session's name in channel-layer events (not the key itself, which logs in)."""
    return hashlib.sha256(f"chatsite-session:{session_key or ''}".encode()).hexdigest()[:32]


def sessions_recheck(*, user_id: int, ended_session_key: str | None = None) -> None:
    """Tell every open socket of the person, in any process, to check its session; the ones
    of `ended_session_key` close without checking. Sent once the transaction commits."""
    event: dict[str, Any] = {"type": CHECK_EVENT}
    if ended_session_key:
        event["ended"] = session_tag(ended_session_key)
    transaction.on_commit(lambda: _send(user_id, event))


def _send(user_id: int, event: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(groups.user_group(user_id), event)
    except Exception:  # the sockets re-check by themselves (CHATSITE_SOCKET_SESSION_CHECK_SECONDS)
        log.exception("Could not tell the sockets of user %s to check their sessions", user_id)


# --- what ends sessions (connected in AccountsConfig.ready) ---------------------------------

_AUTH_FIELDS = {"password", "is_active"}


def _on_logged_out(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    session = getattr(request, "session", None)
    if user is not None and getattr(user, "pk", None) is not None:
        sessions_recheck(user_id=user.pk, ended_session_key=session.session_key if session is not None else None)


def _on_user_saved(sender: Any, instance: Any, created: bool, update_fields: Any = None, **kwargs: Any) -> None:
    # Saves that cannot touch the password or the active flag (e.g. last_login at every
    # log-in) are skipped; any other may have ended sessions.
    if created or (update_fields is not None and not _AUTH_FIELDS & set(update_fields)):
        return
    sessions_recheck(user_id=instance.pk)


def _on_user_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    sessions_recheck(user_id=instance.pk)


def connect_signals() -> None:
    user_model = auth.get_user_model()
    user_logged_out.connect(_on_logged_out, dispatch_uid="chatsite-sessions-logout")
    post_save.connect(_on_user_saved, sender=user_model, dispatch_uid="chatsite-sessions-user-saved")
    post_delete.connect(_on_user_deleted, sender=user_model, dispatch_uid="chatsite-sessions-user-deleted")
