"""NUL characters, lone surrogates and other malformed input at every edge (issue 13, items 4
and 5). The rule (conversations/cleantext.py): what is stored has each NUL and lone surrogate
replaced by U+FFFD, one for one; a person's JSON holding a lone surrogate is refused as
malformed. Run on both databases: PostgreSQL cannot store a NUL at all."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from accounts import tokens
from conversations import exports, services
from conversations.models import Conversation, Message
from tests.conftest import Socket, clear_default_cache, stored_message

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("hub_cleanup")]

R = "\ufffd"


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    clear_default_cache()
    yield
    clear_default_cache()


# --- Claude's replies: the person keeps what they saw ----------------------------------------


@pytest.mark.parametrize("odd", ["\x00", "\ud800", "\udfff"], ids=["nul", "high-surrogate", "low-surrogate"])
async def test_a_reply_with_a_nul_or_lone_surrogate_is_stored_as_it_was_streamed(odd, llm, token, alice, conversation, settings):
    settings.CHATSITE_CHECKPOINT_SECONDS = 0.1  # checkpoints while it streams, too
    text = "Before the odd character. " * 6 + f"[{odd}]" + " After it, the reply goes on." * 6
    llm.script([{"text": text, "tps": 150}], match=token)
    sock = Socket(alice, conversation.pk)
    assert (await sock.connect())[0]
    created = await sock.send_message(f"hi {token}")
    streamed, end = await sock.follow_to_end(created["reply"]["generation_id"])

    expected = text.replace(odd, R)
    assert streamed == expected  # what the person saw ...
    reply = await stored_message(created["reply"]["id"])
    assert (reply.content, reply.status, reply.error) == (expected, Message.Status.COMPLETE, "")  # ... is what is kept
    assert end["message"]["status"] == "complete" and f"[{R}]" in end["message"]["html"]
    assert end["content_length"] == len(expected)
    await sock.close()


def test_a_checkpoint_stores_a_nul_as_u_fffd(alice, conversation):
    user_message, reply, spec = services.message_send(conversation=conversation, content="hello")
    services.generation_checkpoint(items=[(reply.pk, reply.generation_id, "a\x00b\ud800c")], runner="test")
    assert Message.objects.get(pk=reply.pk).content == f"a{R}b{R}c"


# --- what a person sends ---------------------------------------------------------------------


async def test_a_nul_in_a_websocket_message_is_stored_as_u_fffd(llm, token, alice, conversation):
    llm.script([{"text": "ok"}], match=token)
    sock = Socket(alice, conversation.pk)
    await sock.connect()
    created = await sock.send_message(f"a\x00b {token}")
    await sock.follow_to_end(created["reply"]["generation_id"])
    assert (await stored_message(created["user_message"]["id"])).content == f"a{R}b {token}"
    await sock.close()


def test_a_nul_in_a_rename_is_stored_as_u_fffd(client, alice, conversation):
    client.force_login(alice)
    response = client.post(reverse("conversation_rename", args=[conversation.pk]), {"title": "my\x00title"})
    assert response.status_code == 302
    assert Conversation.objects.get(pk=conversation.pk).title == f"my{R}title"


@pytest.mark.parametrize("name", ["conversation_search", "conversation_search_json"])
def test_a_nul_in_a_search_is_no_error(client, alice, conversation, name):
    client.force_login(alice)
    response = client.get(reverse(name), {"q": "hello\x00world"})
    assert response.status_code == 200


def test_a_nul_in_a_share_token_is_not_found(client):
    assert client.get("/chat/shared/%00aaaaaaaaaaaaaaaaaaaaaaaa/").status_code == 404
    assert client.get("/chat/shared/aaaaaaaaaaaaaaaa%00aaaaaaaa/").status_code == 404


def _api(client, user, method: str, path: str, raw: str):
    key = tokens.api_token_create(user=user, name="t")[1]
    return getattr(client, method)(f"/api/v1{path}", data=raw.encode(), content_type="application/json", headers={"Authorization": f"Bearer {key}"})


def test_a_nul_in_an_api_title_is_stored_as_u_fffd(client, alice, conversation):
    created = _api(client, alice, "post", "/conversations", json.dumps({"title": "new\x00one"}))
    assert created.status_code == 201, created.content
    assert created.json()["title"] == f"new{R}one"
    renamed = _api(client, alice, "patch", f"/conversations/{conversation.pk}", json.dumps({"title": "re\x00named"}))
    assert renamed.status_code == 200, renamed.content
    assert Conversation.objects.get(pk=conversation.pk).title == f"re{R}named"


def test_a_nul_in_an_api_send_is_stored_as_u_fffd(client, llm, token, alice, conversation):
    llm.script([{"text": "fine"}], match=token)
    response = _api(client, alice, "post", f"/conversations/{conversation.pk}/messages", json.dumps({"content": f"x\x00y {token}"}))
    assert response.status_code == 201, response.content
    assert Message.objects.filter(conversation=conversation, role="user").get().content == f"x{R}y {token}"


# --- malformed input: a clear refusal, never a 500 or `internal` -----------------------------


def test_an_api_send_with_a_lone_surrogate_is_a_clear_400(client, alice, conversation):
    response = _api(client, alice, "post", f"/conversations/{conversation.pk}/messages", '{"content": "x\\ud800y"}')
    assert response.status_code == 400
    assert "not text" in response.json()["error"]["message"]
    assert not Message.objects.filter(conversation=conversation).exists()


@pytest.mark.parametrize("frame", [
    '{"type": "regenerate", "message_id": Infinity}',
    '{"type": "continue", "message_id": 1e400}',
    '{"type": "edit", "message_id": 123456789012345678901234567890, "content": "x"}',
    '{"type": "follow", "generation_id": "x", "offset": -Infinity}',
    '[' * 100_000 + ']' * 100_000,
    '{"type": "send", "content": "x\\ud800y", "client_id": "c9"}',
], ids=["infinity", "1e400", "huge-id", "minus-infinity", "nested-100000", "lone-surrogate"])
async def test_a_malformed_websocket_frame_is_a_bad_frame(frame, alice, conversation):
    sock = Socket(alice, conversation.pk)
    await sock.connect()
    await sock.comm.send_to(text_data=frame)
    error = await sock.receive_type("error")
    assert error["code"] == "bad_frame", error
    await sock.send({"type": "ping"})  # and the socket goes on
    assert (await sock.receive_type("pong"))["type"] == "pong"
    await sock.close()


def _import(client, document: str):
    return client.post(reverse("conversation_import"), {"file": SimpleUploadedFile("x.json", document.encode(), content_type="application/json")}, follow=True)


def _export(**message) -> dict:
    return {"format": exports.FORMAT, "version": 1, "conversation": {"title": "t"}, "messages": [{"id": 1, "role": "user", "content": "hi", **message}]}


def test_an_import_with_a_huge_integer_is_refused_clearly(client, alice):
    client.force_login(alice)
    document = json.dumps(_export()).replace('"id": 1', '"id": ' + "9" * 5000)
    response = _import(client, document)
    assert response.status_code == 200
    assert "not valid JSON" in response.content.decode()
    assert not Conversation.objects.filter(owner=alice).exists()


@pytest.mark.parametrize("when", ["0001-01-01T00:00:00+23:59", "9999-12-31T23:59:59-23:59"])
def test_an_import_with_a_date_out_of_range_is_imported_with_now(client, alice, when):
    client.force_login(alice)
    response = _import(client, json.dumps(_export(created_at=when)))
    assert response.status_code == 200
    message = Message.objects.get(conversation__owner=alice)
    assert message.created_at.year >= 2026


def test_an_import_stores_nul_and_lone_surrogates_as_u_fffd(client, alice):
    client.force_login(alice)
    document = json.dumps(_export(content="a\x00b\ud800c"))
    assert _import(client, document).status_code == 200
    assert Message.objects.get(conversation__owner=alice).content == f"a{R}b{R}c"
