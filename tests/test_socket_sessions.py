"""An open websocket closes (4401) when its session ends, for any reason; a refused socket is
accepted first, so that the browser sees the close code (issue 13, items 1 and 9)."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.contrib.sessions.backends.db import SessionStore
from django.test import Client
from django.urls import reverse

from tests.conftest import Socket

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("hub_cleanup")]

PASSWORD = "alice-pass-123"  # conftest's users
NEW_PASSWORD = "tangerine-volcano-42"


def _logged_in_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


async def _open(user, conversation, client: Client) -> Socket:
    sock = Socket(user, conversation.pk, cookie=client.cookies["sessionid"].value)
    assert (await sock.connect())[0]
    return sock


async def _still_open(sock: Socket) -> bool:
    await sock.send({"type": "ping"})
    return (await sock.receive_type("pong", timeout=5))["type"] == "pong"


async def _sessions(user, conversation, count: int = 2) -> list[tuple[Client, Socket]]:
    out = []
    for _ in range(count):
        client = await sync_to_async(_logged_in_client)(user)
        out.append((client, await _open(user, conversation, client)))
    return out


# --- refused sockets: accepted, then closed with the documented code -------------------------


@pytest.mark.parametrize("who", ["anonymous", "bob"])
async def test_a_refused_socket_is_accepted_then_closed_with_its_code(who, bob, conversation):
    """daphne answers a handshake refused before accept with HTTP 403 (close code 1006 in a
    browser): the client could never tell "log in again" from "not found" from a network error."""
    sock = Socket(None if who == "anonymous" else bob, conversation.pk)
    connected, code = await sock.connect()
    assert sock.accepted and not connected
    assert code == (4401 if who == "anonymous" else 4404)


# --- every way a session ends ------------------------------------------------------------------


async def test_logging_out_closes_that_sessions_sockets_and_only_those(alice, conversation):
    (leaving, old_socket), (_staying, other_socket) = await _sessions(alice, conversation)
    await sync_to_async(leaving.post)(reverse("logout"))
    assert await old_socket.closed_with() == 4401
    assert await _still_open(other_socket)
    # A reconnect with the old cookie is refused the same way.
    again = Socket(alice, conversation.pk, cookie=old_socket.cookie)
    assert await again.connect() == (False, 4401)
    await other_socket.close()


async def test_changing_the_password_closes_the_sockets_of_the_other_sessions(alice, conversation):
    (changer, _own), (_other, other_socket) = await _sessions(alice, conversation)
    response = await sync_to_async(changer.post)(
        reverse("password_change"), {"old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert response.status_code == 302
    assert await other_socket.closed_with() == 4401
    # The session that changed the password goes on: its (new) cookie opens a socket.
    fresh = await _open(alice, conversation, changer)
    assert await _still_open(fresh)
    await fresh.close()


async def test_a_new_password_set_any_other_way_closes_every_socket(alice, conversation):
    """Password reset, `changepassword`, a shell: whatever saves a new password."""
    sockets = [sock for _, sock in await _sessions(alice, conversation)]

    def reset() -> None:
        user = get_user_model().objects.get(pk=alice.pk)
        user.set_password(NEW_PASSWORD)
        user.save()

    await sync_to_async(reset)()
    assert [await sock.closed_with() for sock in sockets] == [4401, 4401]


async def test_unticking_active_on_the_admin_change_form_closes_the_sockets(alice, admin_user, conversation):
    (_, sock), = await _sessions(alice, conversation, count=1)

    def untick_active() -> int:
        admin = _logged_in_client(admin_user)
        url = reverse("admin:auth_user_change", args=[alice.pk])
        form = admin.get(url).context["adminform"].form
        data = {name: value for name, value in form.initial.items() if value is not None and name not in ("password", "groups", "user_permissions")}
        data.update({
            "is_active": "",  # unticked (a ticked box would send "on")
            "last_login_0": "", "last_login_1": "",
            "date_joined_0": alice.date_joined.strftime("%Y-%m-%d"), "date_joined_1": alice.date_joined.strftime("%H:%M:%S"),
            "spend_limit-TOTAL_FORMS": "0", "spend_limit-INITIAL_FORMS": "0",
            "spend_limit-MIN_NUM_FORMS": "0", "spend_limit-MAX_NUM_FORMS": "1",
        })
        data.pop("is_active")
        response = admin.post(url, data)
        assert response.status_code == 302, response.context["adminform"].form.errors if response.context else response
        return get_user_model().objects.filter(pk=alice.pk, is_active=False).count()

    assert await sync_to_async(untick_active)() == 1
    assert await sock.closed_with() == 4401


async def test_deleting_the_account_closes_its_sockets(alice, conversation):
    (_, sock), = await _sessions(alice, conversation, count=1)
    await sync_to_async(lambda: get_user_model().objects.get(pk=alice.pk).delete())()
    assert await sock.closed_with() == 4401


async def test_an_expired_session_closes_its_socket(alice, conversation):
    client = await sync_to_async(_logged_in_client)(alice)

    def expire_soon() -> None:
        session = SessionStore(client.cookies["sessionid"].value)
        session.set_expiry(2)
        session.save()

    await sync_to_async(expire_soon)()
    sock = await _open(alice, conversation, client)
    assert await _still_open(sock)
    assert await sock.closed_with(timeout=10) == 4401


async def test_a_socket_rechecks_its_session_even_without_an_event(alice, conversation, settings):
    """A session ended where no event is sent (e.g. its row deleted): the periodic check."""
    settings.CHATSITE_SOCKET_SESSION_CHECK_SECONDS = 0.5
    (client, sock), = await _sessions(alice, conversation, count=1)
    await sync_to_async(SessionStore(client.cookies["sessionid"].value).delete)()
    assert await sock.closed_with(timeout=10) == 4401


async def test_a_logged_out_socket_gets_no_more_messages(llm, token, alice, conversation):
    """What the finding was about: the old session's socket kept receiving every reply."""
    (leaving, old_socket), (_staying, tab) = await _sessions(alice, conversation)
    await sync_to_async(leaving.post)(reverse("logout"))
    assert await old_socket.closed_with() == 4401
    llm.script([{"text": "private answer"}], match=token)
    created = await tab.send_message(f"hello {token}")
    await tab.follow_to_end(created["reply"]["generation_id"])
    with pytest.raises(asyncio.TimeoutError):  # nothing more arrives on the closed socket
        await old_socket.comm.receive_output(timeout=1)
    await tab.close()
