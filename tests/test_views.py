"""Chat pages: login required, owner-scoped, safe rendering of stored replies."""

import pytest
from django.urls import reverse

from conversations import services
from conversations.models import Conversation, Message, SystemPrompt

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice_client(client, alice):
    client.force_login(alice)
    return client


def _reply(conversation, content, status=Message.Status.COMPLETE):
    user = Message.objects.create(conversation=conversation, role="user", content="question")
    reply = Message.objects.create(conversation=conversation, parent=user, role="assistant", content=content, status=status)
    conversation.current_leaf = reply
    conversation.save()
    return reply


def test_chat_pages_require_login(client, alice):
    conversation = services.conversation_create(owner=alice)
    for url in (reverse("chat"), reverse("conversation_detail", args=[conversation.pk])):
        response = client.get(url)
        assert response.status_code == 302 and reverse("login") in response["Location"]


def test_other_user_cannot_open_conversation_by_url(client, alice, bob):
    conversation = services.conversation_create(owner=alice)
    _reply(conversation, "alice's secret")
    client.force_login(bob)
    response = client.get(reverse("conversation_detail", args=[conversation.pk]))
    assert response.status_code == 404
    assert b"secret" not in response.content


def test_other_user_cannot_delete_conversation(client, alice, bob):
    conversation = services.conversation_create(owner=alice)
    client.force_login(bob)
    assert client.post(reverse("conversation_delete", args=[conversation.pk])).status_code == 404
    assert Conversation.objects.filter(pk=conversation.pk).exists()


def test_sidebar_lists_only_own_conversations_newest_first(alice_client, alice, bob):
    older = services.conversation_create(owner=alice)
    older.title = "older chat"
    older.save()
    newer = services.conversation_create(owner=alice)
    newer.title = "newer chat"
    newer.save()
    theirs = services.conversation_create(owner=bob)
    theirs.title = "bob's chat"
    theirs.save()
    response = alice_client.get(reverse("chat"))
    assert response.status_code == 200
    html = response.content.decode()
    assert "bob&#x27;s chat" not in html and "bob's chat" not in html
    assert html.index("newer chat") < html.index("older chat")


def test_sidebar_query_count_does_not_grow_with_conversations(alice_client, alice, django_assert_max_num_queries):
    for i in range(30):
        conversation = services.conversation_create(owner=alice)
        conversation.title = f"listed chat {i:02d}"
        conversation.save()
    with django_assert_max_num_queries(8):
        response = alice_client.get(reverse("chat"))
    assert response.status_code == 200
    html = response.content.decode()
    assert all(f"listed chat {i:02d}" in html for i in range(30))


def test_new_conversation_uses_chosen_preset_and_model(alice_client, alice, settings):
    preset = SystemPrompt.objects.create(name="Pirate", text="Talk like a pirate.")
    model = "claude-haiku-5-5"
    response = alice_client.post(reverse("conversation_new"), {"preset": preset.pk, "model": model, "message": "ahoy"})
    conversation = Conversation.objects.get(owner=alice)
    assert response.status_code == 302 and response["Location"] == reverse("conversation_detail", args=[conversation.pk])
    assert conversation.system_prompt == "Talk like a pirate." and conversation.model == model
    page = alice_client.get(response["Location"])
    assert page.status_code == 200
    assert '"pendingMessage": "ahoy"' in page.content.decode()  # the first message goes out over the websocket


def test_new_conversation_rejects_unknown_model_and_inactive_preset(alice_client, alice):
    inactive = SystemPrompt.objects.create(name="Old", text="x", is_active=False)
    for form, said in (({"model": "gpt-4"}, "That model is not offered on this server."),
                       ({"preset": inactive.pk}, "That system prompt is not available.")):
        response = alice_client.post(reverse("conversation_new"), form, follow=True)
        assert response.redirect_chain == [(reverse("chat"), 302)], form
        assert response.status_code == 200
        assert said in response.content.decode()  # told why, on the page they come back to
    assert not Conversation.objects.filter(owner=alice).exists()


def test_stored_reply_with_script_payload_renders_inert(alice_client, alice):
    conversation = services.conversation_create(owner=alice)
    _reply(conversation, 'Hi <script>alert(1)</script> <img src=x onerror="alert(2)"> [x](javascript:alert(3))')
    response = alice_client.get(reverse("conversation_detail", args=[conversation.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    thread = html[html.index('id="thread"'):html.index('id="composer"')]
    assert "<script>alert" not in thread
    assert "<img" not in thread
    assert 'href="javascript' not in thread
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in thread


def test_streaming_reply_text_is_passed_as_json_not_html(alice_client, alice):
    conversation = services.conversation_create(owner=alice)
    reply = _reply(conversation, "</script><script>alert(1)</script>", status=Message.Status.STREAMING)
    reply.generation_id = Message.new_generation_id()
    reply.save()
    response = alice_client.get(reverse("conversation_detail", args=[conversation.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    assert "</script><script>alert(1)" not in html
    assert "\\u003C/script\\u003E" in html  # json_script escapes it


def test_offline_badge_shown_without_api_key(alice_client, settings):
    settings.CHATSITE_OFFLINE_DEMO = True
    response = alice_client.get(reverse("chat"))
    assert response.status_code == 200 and "Offline demo model" in response.content.decode()
    settings.CHATSITE_OFFLINE_DEMO = False
    response = alice_client.get(reverse("chat"))
    assert response.status_code == 200 and "Offline demo model" not in response.content.decode()


def test_api_key_never_reaches_the_browser(alice_client, alice, settings):
    settings.ANTHROPIC_API_KEY = "sk-ant-secret-value"
    conversation = services.conversation_create(owner=alice)
    for url in (reverse("chat"), reverse("conversation_detail", args=[conversation.pk])):
        response = alice_client.get(url)
        assert response.status_code == 200, url
        assert "sk-ant-secret-value" not in response.content.decode()


def test_stream_stats_are_for_staff_only(client, alice, admin_user):
    client.force_login(alice)
    assert client.get(reverse("ops_streams")).status_code == 404
    client.force_login(admin_user)
    response = client.get(reverse("ops_streams"))
    assert response.status_code == 200
    data = response.json()
    assert data["live_generations"] == 0 and "checkpoints" in data["stats"]
