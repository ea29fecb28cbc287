"""Export (Markdown, JSON), import of a JSON export, and read-only share links."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from conversations import exports, services, sharing
from conversations.models import Conversation, Message, ShareLink, UsageRecord

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice_client(client, alice):
    client.force_login(alice)
    return client


def _add(conversation, role, content, parent=None, **fields):
    message = Message.objects.create(conversation=conversation, parent=parent, role=role, content=content, **fields)
    Conversation.objects.filter(pk=conversation.pk).update(current_leaf=message)
    conversation.current_leaf = message
    return message


def _reply(conversation, content, parent, **fields):
    usage = {"input_tokens": 1200, "output_tokens": 345, "cache_creation_input_tokens": 10, "cache_read_input_tokens": 800, "cost": Decimal("0.01234567"), "finished_at": timezone.now()}
    return _add(conversation, "assistant", content, parent, model=conversation.model, stop_reason="end_turn", **(usage | fields))


@pytest.fixture
def chat(alice):
    """Alice's conversation: two turns on screen, plus an older version of the second reply."""
    conversation = services.conversation_create(owner=alice)
    Conversation.objects.filter(pk=conversation.pk).update(title="Rust lifetimes", system_prompt="Be concise.\nUse examples.")
    conversation.refresh_from_db()
    q1 = _add(conversation, "user", "What is a lifetime?")
    a1 = _reply(conversation, "A **lifetime** is a scope.\n\n```rust\nfn f<'a>(x: &'a str) {}\n```", q1)
    q2 = _add(conversation, "user", "Show me `'static`.", a1)
    _reply(conversation, "An older answer.", q2, cost=Decimal("0.001"))
    a2 = _reply(conversation, "`'static` lives for the whole program.", q2)
    conversation.refresh_from_db()
    assert conversation.current_leaf_id == a2.pk
    return conversation


def _strip_volatile(data):
    """An export without what legitimately differs between copies: timestamps of the export."""
    data = json.loads(json.dumps(data))
    data.pop("exported_at")
    data["conversation"].pop("created_at")
    return data


# --- export ------------------------------------------------------------------------------------


def test_markdown_export_is_a_download_with_title_prompt_thread_and_usage(alice_client, chat):
    response = alice_client.get(reverse("conversation_export_markdown", args=[chat.pk]))
    assert response.status_code == 200
    assert response["Content-Type"] == "text/markdown; charset=utf-8"
    assert response["Content-Disposition"] == f'attachment; filename="chatsite-rust-lifetimes-{chat.created_at:%Y%m%d}.md"'
    assert "no-store" in response["Cache-Control"]
    text = response.content.decode()
    assert text.startswith("# Rust lifetimes\n")
    assert f"- Model: {chat.model}" in text
    assert "> Be concise.\n> Use examples." in text
    assert "## You" in text and f"## Claude ({chat.model})" in text
    assert "```rust\nfn f<'a>(x: &'a str) {}\n```" in text  # the markdown as written
    assert "1,200 in · 345 out · $0.0123" in text
    assert "`'static` lives for the whole program." in text
    assert "An older answer." not in text  # the visible thread only


def test_json_export_has_model_prompt_usage_cost_and_the_visible_thread(alice_client, chat):
    response = alice_client.get(reverse("conversation_export_json", args=[chat.pk]))
    assert response["Content-Type"] == "application/json; charset=utf-8"
    assert response["Content-Disposition"].endswith('.json"')
    data = json.loads(response.content)
    assert data["format"] == "chatsite.conversation" and data["version"] == 1 and data["scope"] == "thread"
    meta = data["conversation"]
    assert meta["title"] == "Rust lifetimes" and meta["model"] == chat.model and meta["system_prompt"] == "Be concise.\nUse examples."
    assert [(m["id"], m["parent_id"], m["role"]) for m in data["messages"]] == [(1, None, "user"), (2, 1, "assistant"), (3, 2, "user"), (4, 3, "assistant")]
    assert meta["current_leaf_id"] == 4
    reply = data["messages"][1]
    assert reply["usage"] == {"input_tokens": 1200, "output_tokens": 345, "cache_creation_input_tokens": 10, "cache_read_input_tokens": 800, "cache_creation_1h_input_tokens": 0}
    assert reply["cost"] == "0.01234567" and reply["model"] == chat.model and reply["stop_reason"] == "end_turn"
    assert reply["created_at"].endswith("Z") and reply["status"] == "complete"
    assert meta["usage"]["cost"] == "0.02469134" and meta["usage"]["output_tokens"] == 690
    # No database id leaves the server.
    db_ids = set(Message.objects.filter(conversation=chat).values_list("pk", flat=True))
    assert not db_ids & {m["id"] for m in data["messages"]} - {1, 2, 3, 4} and "owner" not in json.dumps(data)


def test_json_export_with_all_branches_has_every_version_with_parent_ids(alice_client, chat):
    data = json.loads(alice_client.get(reverse("conversation_export_json", args=[chat.pk]) + "?branches=all").content)
    assert data["scope"] == "all"
    shape = [(m["id"], m["parent_id"], m["content"][:10]) for m in data["messages"]]
    assert shape == [(1, None, "What is a "), (2, 1, "A **lifeti"), (3, 2, "Show me `'"), (4, 3, "An older a"), (5, 3, "`'static` ")]
    assert data["conversation"]["current_leaf_id"] == 5


@pytest.mark.parametrize("branches", [False, True])
def test_export_import_export_round_trip_is_equal(alice, bob, chat, branches):
    first = exports.conversation_export_data(conversation=chat, branches=branches)
    result = exports.conversation_import(owner=bob, raw=json.dumps(first).encode())
    second = exports.conversation_export_data(conversation=result.conversation, branches=branches)
    assert _strip_volatile(second) == _strip_volatile(first)
    assert result.message_count == len(first["messages"])


# --- import ------------------------------------------------------------------------------------


def _upload(client, payload, name="export.json"):
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return client.post(reverse("conversation_import"), {"file": SimpleUploadedFile(name, raw, content_type="application/json")})


def test_import_makes_a_new_conversation_of_the_importer_with_the_same_tree(client, alice, bob, chat):
    data = exports.conversation_export_data(conversation=chat, branches=True)
    client.force_login(bob)
    response = _upload(client, data)
    imported = Conversation.objects.get(owner=bob)
    assert response.status_code == 302 and response["Location"] == reverse("conversation_detail", args=[imported.pk])
    assert imported.title == "Rust lifetimes" and imported.system_prompt == "Be concise.\nUse examples." and imported.model == chat.model
    messages = list(Message.objects.filter(conversation=imported).order_by("id"))
    assert len(messages) == 5 and all(m.status == Message.Status.COMPLETE for m in messages)
    originals = list(Message.objects.filter(conversation=chat).order_by("id"))
    assert [m.content for m in messages] == [m.content for m in originals]
    assert [m.created_at for m in messages] == [m.created_at for m in originals]  # kept from the file
    # The same tree, with new rows: regenerated replies are siblings again.
    assert messages[3].parent_id == messages[4].parent_id == messages[2].pk
    assert imported.current_leaf_id == messages[4].pk
    assert not {m.pk for m in messages} & {m.pk for m in originals}
    # Usage shows under the replies, but nothing is billed to bob.
    assert messages[1].output_tokens == 345 and messages[1].cost == Decimal("0.01234567")
    assert not UsageRecord.objects.filter(user=bob).exists()
    page = client.get(response["Location"]).content.decode()
    assert "Imported “Rust lifetimes”: 5 messages." in page
    assert "A <strong>lifetime</strong> is a scope." in page


def test_import_never_trusts_ids_from_the_file(client, alice, bob, chat):
    """Ids in the file only link parents inside the file: they can't attach to anyone's rows."""
    alice_message = Message.objects.filter(conversation=chat).first()
    payload = {
        "format": "chatsite.conversation", "version": 1,
        "conversation": {"title": "ids", "model": chat.model, "current_leaf_id": "b"},
        "messages": [
            {"id": alice_message.pk, "role": "user", "content": "first"},
            {"id": "b", "parent_id": alice_message.pk, "role": "assistant", "content": "second"},
        ],
    }
    client.force_login(bob)
    _upload(client, payload)
    imported = Conversation.objects.get(owner=bob)
    first, second = Message.objects.filter(conversation=imported).order_by("id")
    assert first.pk != alice_message.pk and second.parent_id == first.pk and imported.current_leaf_id == second.pk
    assert Message.objects.filter(conversation=chat).count() == 5


def test_import_stores_text_any_database_can_hold(bob):
    raw = json.dumps(_with(messages__0__content="nul \x00 and a lone \ud800 surrogate", conversation={"title": "t\x00"})).encode()
    imported = exports.conversation_import(owner=bob, raw=raw).conversation
    # conversations.cleantext's rule: each becomes U+FFFD.
    assert imported.title == "t\ufffd"
    assert Message.objects.get(conversation=imported).content == "nul \ufffd and a lone \ufffd surrogate"


def test_import_with_a_model_not_offered_here_uses_the_default(client, bob, chat):
    data = exports.conversation_export_data(conversation=chat)
    data["conversation"]["model"] = "claude-from-elsewhere"
    client.force_login(bob)
    response = _upload(client, data)
    imported = Conversation.objects.get(owner=bob)
    from conversations import modelcache

    assert imported.model == modelcache.default_model().model_id
    page = client.get(response["Location"]).content.decode()
    assert "Its model (claude-from-elsewhere) is not offered here" in page


def _valid():
    return {"format": "chatsite.conversation", "version": 1, "conversation": {"title": "t"}, "messages": [{"id": 1, "role": "user", "content": "hi"}]}


def _with(**changes):
    data = _valid()
    for path, value in changes.items():
        target = data
        *parents, last = path.split("__")
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target[key]
        target[last] = value
    return data


@pytest.mark.parametrize(("payload", "error"), [
    (b"\x89PNG not json", "it is not valid JSON"),
    (b"[1, 2, 3]", "not a Chatsite JSON export"),
    (json.dumps({"format": "other", "messages": []}).encode(), "not a Chatsite JSON export"),
    (_with(version=99), "format version 99; this server reads up to version 1"),
    (_with(version="1"), "no valid format version"),
    (_with(messages=[]), "The export has no messages."),
    (_with(messages="hello"), "The export has no list of messages."),
    (_with(messages__0__role="system"), 'Message 1: role must be "user" or "assistant".'),
    (_with(messages__0__content=None), "Message 1: content must be text."),
    (_with(messages__0__content=["a"]), "Message 1: content must be text."),
    (_with(messages__0__parent_id=7), "Message 1: its parent (7) must come earlier in the file."),
    (_with(messages=[{"id": 1, "role": "user", "content": "a"}, {"id": 1, "role": "assistant", "content": "b"}]), "Message 2: id 1 is used twice."),
    (_with(messages=[{"id": {"x": 1}, "role": "user", "content": "a"}]), "Message 1: id must be a number or a short name."),
    (_with(messages=[{"id": 1, "role": "user", "content": "a"}, {"id": 2, "parent_id": 1, "role": "assistant", "content": "b", "usage": {"output_tokens": -5}}]), "Message 2: usage.output_tokens must be a whole number of tokens."),
    (_with(messages=[{"id": 1, "role": "user", "content": "a"}, {"id": 2, "parent_id": 1, "role": "assistant", "content": "b", "cost": "NaN"}]), "Message 2: cost must be a number of dollars."),
    (_with(messages=["not an object"]), "Message 1 is not an object."),
    (_with(conversation="x"), "conversation must be an object"),
    (_with(conversation={"system_prompt": 5}), "The system prompt must be text."),
    (b"[" * 100_000 + b"]" * 100_000, "it is not valid JSON"),
])
def test_import_validation_errors_are_clear_and_create_nothing(client, bob, payload, error):
    client.force_login(bob)
    response = _upload(client, payload)
    assert response.status_code == 302 and response["Location"] == reverse("chat")
    page = client.get(reverse("chat")).content.decode()
    assert "Could not import export.json: " in page
    from django.utils.html import escape

    assert escape(error) in page, page[page.find("flash"):][:400]
    assert not Conversation.objects.filter(owner=bob).exists()


def test_import_refuses_a_file_over_the_size_limit(client, bob, settings):
    settings.CHATSITE_IMPORT_MAX_BYTES = 1000
    client.force_login(bob)
    data = _valid()
    data["messages"][0]["content"] = "x" * 2000
    response = _upload(client, data)
    assert response["Location"] == reverse("chat")
    assert "Could not import that file: That file is 2 KB; the limit is 1 KB." in client.get(reverse("chat")).content.decode()
    assert not Conversation.objects.filter(owner=bob).exists()
    # A request body far over the limit is refused before Django reads the upload.
    response = client.post(reverse("conversation_import"), data=b"x", content_type="application/json", CONTENT_LENGTH=str(10_000_000))
    assert response["Location"] == reverse("chat")
    assert "Could not import that file: That file is 9.9 MB; the limit is 1 KB." in client.get(reverse("chat")).content.decode()


def test_import_without_a_file_or_logged_out_or_by_get(client, bob):
    assert client.post(reverse("conversation_import")).status_code == 302  # to the login page
    assert reverse("login") in client.post(reverse("conversation_import"))["Location"]
    client.force_login(bob)
    assert client.get(reverse("conversation_import")).status_code == 405
    response = client.post(reverse("conversation_import"))
    assert response["Location"] == reverse("chat")
    assert "Choose a Chatsite JSON export to import." in client.get(reverse("chat")).content.decode()


def test_new_chat_page_offers_import(alice_client):
    page = alice_client.get(reverse("chat")).content.decode()
    assert f'action="{reverse("conversation_import")}"' in page and 'enctype="multipart/form-data"' in page and 'type="file"' in page


# --- share links -------------------------------------------------------------------------------


def _share(client, conversation):
    response = client.post(reverse("share_create", args=[conversation.pk]))
    assert response.status_code == 302
    return ShareLink.objects.filter(conversation=conversation).latest("id")


def test_share_link_shows_a_snapshot_to_anyone_without_owner_data(alice_client, client, alice, chat):
    link = _share(alice_client, chat)
    assert len(link.token) >= 32
    alice_client.logout()
    response = client.get(reverse("shared_conversation", args=[link.token]))
    assert response.status_code == 200
    page = response.content.decode()
    assert "Rust lifetimes" in page and "What is a lifetime?" in page
    assert "A <strong>lifetime</strong> is a scope." in page  # rendered through the sanitiser
    assert "static</code> lives for the whole program." in page
    assert "An older answer." not in page  # the visible thread only
    for secret in ("alice", "alice@example.com", "$0.01", "1,200", "345", "Be concise"):
        assert secret not in page, secret
    for message_id in Message.objects.filter(conversation=chat).values_list("pk", flat=True):
        assert f'data-message-id="{message_id}"' not in page and f"/{message_id}/" not in page
    assert f"/chat/{chat.pk}/" not in page
    assert '<meta name="robots" content="noindex, nofollow">' in page
    assert response["X-Robots-Tag"] == "noindex, nofollow"
    assert response["Referrer-Policy"] == "no-referrer"
    assert "no-store" in response["Cache-Control"]
    # The snapshot itself holds nothing else either.
    assert set(link.snapshot) == {"version", "title", "model", "created_at", "messages"}
    assert all(set(m) == {"role", "content", "created_at"} for m in link.snapshot["messages"])


def test_messages_after_sharing_are_not_in_the_snapshot(alice_client, client, chat):
    link = _share(alice_client, chat)
    _add(chat, "user", "A later question nobody should see", chat.current_leaf)
    Conversation.objects.filter(pk=chat.pk).update(title="Renamed later")
    page = client.get(reverse("shared_conversation", args=[link.token])).content.decode()
    assert "A later question" not in page and "Renamed later" not in page and "Rust lifetimes" in page


def test_a_new_link_snapshots_the_thread_as_it_is_then(alice_client, chat):
    first = _share(alice_client, chat)
    _add(chat, "user", "Now included", chat.current_leaf)
    second = _share(alice_client, chat)
    assert first.token != second.token
    assert "Now included" in alice_client.get(reverse("shared_conversation", args=[second.token])).content.decode()
    assert "Now included" not in alice_client.get(reverse("shared_conversation", args=[first.token])).content.decode()


def test_revoked_link_is_404(alice_client, client, chat):
    link = _share(alice_client, chat)
    response = alice_client.post(reverse("share_revoke", args=[chat.pk, link.pk]))
    assert response.status_code == 302
    assert client.get(reverse("shared_conversation", args=[link.token])).status_code == 404
    assert alice_client.post(reverse("share_revoke", args=[chat.pk, link.pk])).status_code == 404  # already revoked


def test_deleted_conversation_and_unknown_tokens_are_404(alice_client, client, chat):
    link = _share(alice_client, chat)
    for token in ("x", "nope" * 8, link.token[:-1] + ("A" if link.token[-1] != "A" else "B"), "a" * 200):
        assert client.get(reverse("shared_conversation", args=[token])).status_code == 404
    Conversation.objects.filter(pk=chat.pk).update(deleted_at=chat.created_at)
    assert client.get(reverse("shared_conversation", args=[link.token])).status_code == 404


def test_sharing_an_empty_conversation_is_refused(alice_client, alice):
    conversation = services.conversation_create(owner=alice)
    response = alice_client.post(reverse("share_create", args=[conversation.pk]))
    assert response.status_code == 302
    assert not ShareLink.objects.exists()
    page = alice_client.get(response["Location"]).content.decode()
    assert "There is nothing to share yet" in page


def test_share_menu_lists_active_links_only(alice_client, chat):
    kept, revoked = _share(alice_client, chat), _share(alice_client, chat)
    sharing.share_link_revoke(conversation=chat, link_id=revoked.pk)
    alice_client.get(reverse("chat"))  # shows (and so clears) the "link created" notices
    fragment = alice_client.get(reverse("share_links", args=[chat.pk])).content.decode()
    assert f"http://testserver/chat/shared/{kept.token}/" in fragment and revoked.token not in fragment
    assert f'data-copy-text="http://testserver/chat/shared/{kept.token}/"' in fragment
    assert reverse("share_revoke", args=[chat.pk, kept.pk]) in fragment
    # Without JavaScript the list comes with the page (after creating or revoking a link).
    page = alice_client.get(reverse("conversation_detail", args=[chat.pk]) + "?share=open").content.decode()
    assert kept.token in page and revoked.token not in page and 'id="share-menu" ' in page


def test_conversation_page_has_export_and_share_menus(alice_client, chat):
    page = alice_client.get(reverse("conversation_detail", args=[chat.pk])).content.decode()
    for name in ("conversation_export_markdown", "conversation_export_json", "share_create", "share_links"):
        assert reverse(name, args=[chat.pk]) in page
    assert f'{reverse("conversation_export_json", args=[chat.pk])}?branches=all' in page
    assert f'data-source-url="{reverse("message_source", args=[chat.pk, 0])}"' in page


def test_message_source_is_the_markdown_text(alice_client, chat):
    reply = Message.objects.filter(conversation=chat, role="assistant").first()
    response = alice_client.get(reverse("message_source", args=[chat.pk, reply.pk]))
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert response.content.decode() == reply.content


# --- other people ------------------------------------------------------------------------------


def test_bob_cannot_export_share_revoke_or_read_alices_conversation(client, alice, bob, chat):
    link = sharing.share_link_create(conversation=chat)
    reply = Message.objects.filter(conversation=chat, role="assistant").first()
    client.force_login(bob)
    for name, args in (
        ("conversation_export_markdown", [chat.pk]),
        ("conversation_export_json", [chat.pk]),
        ("share_links", [chat.pk]),
        ("message_source", [chat.pk, reply.pk]),
    ):
        response = client.get(reverse(name, args=args))
        assert response.status_code == 404, name
        assert b"lifetime" not in response.content
    assert client.post(reverse("share_create", args=[chat.pk])).status_code == 404
    assert client.post(reverse("share_revoke", args=[chat.pk, link.pk])).status_code == 404
    assert ShareLink.objects.filter(conversation=chat).count() == 1 and ShareLink.objects.get().revoked_at is None
    # Nor through a conversation of his own: the link id is scoped to the conversation.
    own = services.conversation_create(owner=bob)
    assert client.post(reverse("share_revoke", args=[own.pk, link.pk])).status_code == 404
    assert client.get(reverse("message_source", args=[own.pk, reply.pk])).status_code == 404
    assert ShareLink.objects.get().revoked_at is None


def test_charlie_logged_out_or_in_sees_only_the_shared_snapshot(client, alice, charlie, chat):
    link = sharing.share_link_create(conversation=chat)
    client.force_login(charlie)
    assert client.get(reverse("shared_conversation", args=[link.token])).status_code == 200
    assert client.get(reverse("conversation_detail", args=[chat.pk])).status_code == 404


def test_export_and_share_require_login(client, chat):
    for url in (reverse("conversation_export_markdown", args=[chat.pk]), reverse("conversation_export_json", args=[chat.pk]), reverse("share_links", args=[chat.pk])):
        response = client.get(url)
        assert response.status_code == 302 and reverse("login") in response["Location"]
    assert reverse("login") in client.post(reverse("share_create", args=[chat.pk]))["Location"]
