"""The admin console: system prompt versions, previews, the default and group restrictions;
reviewing conversations (filters, read-only content, exports, per-person totals); accounts
(deactivation reaches sessions, API tokens and websockets) and who may see any of it."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from decimal import Decimal

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db import connection
from django.http import HttpRequest
from django.test import AsyncClient
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts import services as account_services
from accounts import tokens
from conversations import exports, prompts, selectors, services
from conversations.errors import ChatError
from conversations.models import Conversation, Message, SystemPrompt, SystemPromptVersion, UsageRecord
from tests.conftest import session_cookie_for

pytestmark = pytest.mark.django_db
User = get_user_model()


# --- helpers -----------------------------------------------------------------------------------


def _prompt_form(name: str, text: str, **extra) -> dict:
    """The system prompt add/change form as the admin page posts it (the versions inline is
    view-only: its management form only)."""
    data = {
        "name": name, "text": text, "is_active": "on", "cache_enabled": "on", "cache_ttl": "5m",
        "versions-TOTAL_FORMS": "0", "versions-INITIAL_FORMS": "0", "versions-MIN_NUM_FORMS": "0", "versions-MAX_NUM_FORMS": "0",
    }
    data.update(extra)
    return data


def _record(user, cost: str, conversation=None, kind: str = "reply") -> UsageRecord:
    return UsageRecord.objects.create(user=user, conversation=conversation, kind=kind, model="claude-sonnet-5-5", cost=Decimal(cost), uncached_cost=Decimal(cost))


def _exchange(conversation: Conversation, question: str, answer: str, status: str = Message.Status.COMPLETE, parent=None, **reply) -> tuple[Message, Message]:
    asked = Message.objects.create(conversation=conversation, parent=parent, role="user", content=question)
    answered = Message.objects.create(conversation=conversation, parent=asked, role="assistant", content=answer, status=status, **reply)
    Conversation.objects.filter(pk=conversation.pk).update(current_leaf=answered)
    conversation.current_leaf = answered
    return asked, answered


def _listed(response) -> set[int]:
    assert response.status_code == 200, response.status_code
    return {c.pk for c in response.context["cl"].result_list}


@pytest.fixture
def group_a(alice) -> Group:
    group = Group.objects.create(name="Team A")
    alice.groups.add(group)
    return group


@pytest.fixture
def staff(db):
    return User.objects.create_user(username="staffer", password="staffer-pass-123", is_staff=True)


# --- system prompt versions ------------------------------------------------------------------


def test_creating_and_editing_a_prompt_in_admin_keeps_a_version_per_change_with_its_author(admin_client, admin_user):
    response = admin_client.post(reverse("admin:conversations_systemprompt_add"), _prompt_form("Helper", "Be helpful."))
    assert response.status_code == 302, response.content.decode()[:2000]
    prompt = SystemPrompt.objects.get(name="Helper")
    assert [(v.number, v.text, v.created_by) for v in prompt.versions.order_by("number")] == [(1, "Be helpful.", admin_user)]

    change = reverse("admin:conversations_systemprompt_change", args=[prompt.pk])
    assert admin_client.post(change, _prompt_form("Helper", "Be helpful.\r\nBe brief.")).status_code == 302
    assert admin_client.post(change, _prompt_form("Helper", "Be helpful.\r\nBe brief.")).status_code == 302  # no change
    assert admin_client.post(change, _prompt_form("Helper", "Be helpful.\nBe brief.", cache_ttl="1h")).status_code == 302  # settings only
    versions = list(prompt.versions.order_by("number"))
    assert [(v.number, v.text) for v in versions] == [(1, "Be helpful."), (2, "Be helpful.\nBe brief.")]
    assert versions[1].created_by == admin_user

    assert admin_client.post(change, _prompt_form("Helper (v3)", "Be helpful.\nBe brief.")).status_code == 302  # a rename is a change
    assert prompt.versions.count() == 3 and prompt.versions.get(number=3).name == "Helper (v3)"


def test_saving_without_changes_adds_no_version(alice):
    prompt = SystemPrompt(name="Plain", text="Hi")
    first = prompts.system_prompt_save(prompt=prompt, user=alice)
    assert first is not None and first.number == 1 and first.created_by == alice
    assert prompts.system_prompt_save(prompt=prompt, user=alice) is None
    prompt.is_active = False
    assert prompts.system_prompt_save(prompt=prompt, user=alice) is None
    prompt.text = "Hello"
    assert prompts.system_prompt_save(prompt=prompt, user=None).number == 2
    assert prompt.versions.get(number=2).created_by is None


def test_version_page_shows_added_and_removed_lines_escaped(admin_client, admin_user):
    prompt = SystemPrompt(name="Diffed", text="keep this\nline two\n")
    prompts.system_prompt_save(prompt=prompt, user=admin_user)
    prompt.text = "keep this\n<script>alert('x')</script>\n"
    prompts.system_prompt_save(prompt=prompt, user=admin_user)

    response = admin_client.get(reverse("admin:conversations_systemprompt_versions", args=[prompt.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    assert "<script>alert(" not in html
    assert '<tr class="add"><td class="sign">+</td><td>&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;</td></tr>' in html
    assert '<tr class="del"><td class="sign">−</td><td>line two</td></tr>' in html
    assert '<tr class="same"><td class="sign"></td><td>keep this</td></tr>' in html
    assert 'id="v2"' in html and 'id="v1"' in html and "admin" in html  # author shown

    compared = admin_client.get(reverse("admin:conversations_systemprompt_versions", args=[prompt.pk]), {"from": 2, "to": 1}).content.decode()
    assert 'id="compare"' in compared and "v2 → v1" in compared


def test_restoring_an_old_version_makes_a_new_version(admin_client, admin_user):
    prompt = SystemPrompt(name="Restorable", text="first")
    prompts.system_prompt_save(prompt=prompt, user=admin_user)
    prompt.text = "second"
    prompts.system_prompt_save(prompt=prompt, user=admin_user)
    response = admin_client.post(reverse("admin:conversations_systemprompt_restore", args=[prompt.pk, 1]))
    assert response.status_code == 302
    prompt.refresh_from_db()
    assert prompt.text == "first"
    assert [v.text for v in prompt.versions.order_by("number")] == ["first", "second", "first"]
    assert admin_client.get(reverse("admin:conversations_systemprompt_restore", args=[prompt.pk, 1])).status_code == 405


def test_preview_shows_the_text_as_sent_with_tokens_and_cacheability(admin_client):
    short = SystemPrompt.objects.create(name="Short", text="Answer <b>briefly</b>.")
    response = admin_client.get(reverse("admin:conversations_systemprompt_preview", args=[short.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    assert "<b>briefly</b>" not in html and "Answer &lt;b&gt;briefly&lt;/b&gt;." in html
    assert f"≈ {prompts.prompting.estimate_tokens(short.text)}" in html
    assert "Too short to be cached for Claude Sonnet 5.5 (needs 1,024 tokens)" in html
    preview = response.context["preview"]
    assert preview.system == [{"type": "text", "text": short.text}]

    long = SystemPrompt.objects.create(name="Long", text="Follow the house style. " * 200, cache_ttl="1h")
    preview = admin_client.get(reverse("admin:conversations_systemprompt_preview", args=[long.pk])).context["preview"]
    assert preview.long_enough and preview.will_cache
    assert preview.system[0]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}

    change_page = admin_client.get(reverse("admin:conversations_systemprompt_change", args=[long.pk])).content.decode()
    assert "Long enough to be cached for Claude Sonnet 5.5" in change_page


def test_preview_of_unsaved_text_saves_nothing(admin_client):
    response = admin_client.post(reverse("admin:conversations_systemprompt_preview_unsaved"), _prompt_form("Draft", "A draft & <i>notes</i>"))
    assert response.status_code == 200
    assert "A draft &amp; &lt;i&gt;notes&lt;/i&gt;" in response.content.decode()
    assert not SystemPrompt.objects.filter(name="Draft").exists()


def test_make_default_action_moves_the_single_default(admin_client):
    old = SystemPrompt.objects.create(name="Old default", is_default=True)
    new = SystemPrompt.objects.create(name="New default")
    inactive = SystemPrompt.objects.create(name="Retired", is_active=False)
    url = reverse("admin:conversations_systemprompt_changelist")

    admin_client.post(url, {"action": "make_default", "_selected_action": [new.pk]})
    assert list(SystemPrompt.objects.filter(is_default=True)) == [new]

    admin_client.post(url, {"action": "make_default", "_selected_action": [old.pk, new.pk]})  # two: refused
    admin_client.post(url, {"action": "make_default", "_selected_action": [inactive.pk]})  # inactive: refused
    assert list(SystemPrompt.objects.filter(is_default=True)) == [new]

    # Ticking "default" on the form moves it too, instead of clashing with the current one.
    change = reverse("admin:conversations_systemprompt_change", args=[old.pk])
    assert admin_client.post(change, _prompt_form("Old default", "", is_default="on")).status_code == 302
    assert list(SystemPrompt.objects.filter(is_default=True)) == [old]
    refused = admin_client.post(change, _prompt_form("Old default", "", is_default="on", is_active=""))
    assert refused.status_code == 200 and "must be active" in refused.content.decode()


# --- group restriction --------------------------------------------------------------------------


def test_prompt_restricted_to_a_group_is_offered_to_its_members_only(client, alice, bob, group_a):
    public = SystemPrompt.objects.create(name="Everyone's")
    team = SystemPrompt.objects.create(name="Team A only")
    team.groups.add(group_a)

    assert set(selectors.system_prompts_active(user=alice)) == {public, team}
    assert set(selectors.system_prompts_active(user=bob)) == {public}
    assert set(selectors.system_prompts_active()) == {public}  # no user: unrestricted ones only

    client.force_login(bob)
    assert "Team A only" not in client.get(reverse("chat")).content.decode()
    client.force_login(alice)
    assert "Team A only" in client.get(reverse("chat")).content.decode()


def test_creating_a_conversation_with_a_prompt_of_another_group_is_refused(client, alice, bob, group_a):
    team = SystemPrompt.objects.create(name="Team A only", text="secret instructions")
    team.groups.add(group_a)
    with pytest.raises(ChatError) as refused:
        services.conversation_create(owner=bob, preset_id=team.pk)
    assert refused.value.code == "bad_preset"
    assert services.conversation_create(owner=alice, preset_id=team.pk).system_prompt == "secret instructions"

    client.force_login(bob)
    client.post(reverse("conversation_new"), {"preset": team.pk})
    assert not Conversation.objects.filter(owner=bob).exists()


def test_a_restricted_default_prompt_is_not_given_to_others(alice, bob, group_a):
    public = SystemPrompt.objects.create(name="Public")
    team = SystemPrompt.objects.create(name="Team default", is_default=True)
    team.groups.add(group_a)
    assert services.conversation_create(owner=alice).preset == team
    assert services.conversation_create(owner=bob).preset == public


@pytest.mark.django_db(transaction=True)
async def test_api_lists_and_accepts_only_the_prompts_the_caller_may_use(alice, bob):
    def setup():
        group = Group.objects.create(name="Team A")
        alice.groups.add(group)
        public = SystemPrompt.objects.create(name="Public")
        team = SystemPrompt.objects.create(name="Team A only")
        team.groups.add(group)
        return public, team, tokens.api_token_create(user=alice, name="t")[1], tokens.api_token_create(user=bob, name="t")[1]

    public, team, alice_key, bob_key = await database_sync_to_async(setup)()
    client = AsyncClient()

    async def call(method: str, key: str, path: str, body=None):
        kwargs = {"headers": {"Authorization": f"Bearer {key}"}}
        if body is not None:
            kwargs.update(data=json.dumps(body), content_type="application/json")
        return await getattr(client, method)(f"/api/v1{path}", **kwargs)

    bobs = await call("get", bob_key, "/prompts")
    assert [p["name"] for p in bobs.json()] == ["Public"]
    alices = await call("get", alice_key, "/prompts")
    assert {p["name"] for p in alices.json()} == {"Public", "Team A only"}

    refused = await call("post", bob_key, "/conversations", {"prompt_id": team.pk})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "bad_preset"
    created = await call("post", alice_key, "/conversations", {"prompt_id": team.pk})
    assert created.status_code == 201


# --- conversations record their prompt version ----------------------------------------------------


def test_conversation_records_the_prompt_version_it_started_with(admin_client, alice, admin_user):
    prompt = SystemPrompt(name="Versioned", text="v1 text", is_default=True)
    prompts.system_prompt_save(prompt=prompt, user=admin_user)
    before = services.conversation_create(owner=alice)
    prompt.text = "v2 text"
    prompts.system_prompt_save(prompt=prompt, user=admin_user)
    after = services.conversation_create(owner=alice, preset_id=prompt.pk)

    before.refresh_from_db()
    assert (before.prompt_version.number, before.system_prompt) == (1, "v1 text")
    assert (after.prompt_version.number, after.system_prompt) == (2, "v2 text")

    page = admin_client.get(reverse("admin:conversations_conversation_change", args=[before.pk])).content.decode()
    assert "Versioned v1" in page
    listing = admin_client.get(reverse("admin:conversations_conversation_changelist")).content.decode()
    assert "Versioned v1" in listing and "Versioned v2" in listing


def test_prompt_changed_outside_the_admin_gets_a_version_when_used(alice):
    prompt = SystemPrompt.objects.create(name="From the shell", text="original")
    first = services.conversation_create(owner=alice, preset_id=prompt.pk)
    assert first.prompt_version.number == 1 and first.prompt_version.created_by is None
    SystemPrompt.objects.filter(pk=prompt.pk).update(text="edited in the shell")
    second = services.conversation_create(owner=alice, preset_id=prompt.pk)
    assert (second.prompt_version.number, second.prompt_version.text) == (2, "edited in the shell")
    third = services.conversation_create(owner=alice, preset_id=prompt.pk)
    assert third.prompt_version == second.prompt_version
    assert SystemPromptVersion.objects.filter(prompt=prompt).count() == 2


def test_backfill_migration_gives_unversioned_prompts_version_one(alice):
    from importlib import import_module

    from django.apps import apps

    backfill = import_module("conversations.migrations.0005_system_prompt_versions_backfill").backfill
    versioned = SystemPrompt(name="Has one", text="x")
    prompts.system_prompt_save(prompt=versioned, user=alice)
    bare = SystemPrompt.objects.create(name="Has none", text="old text")
    backfill(apps, None)
    assert [(v.number, v.text) for v in bare.versions.all()] == [(1, "old text")]
    assert versioned.versions.count() == 1


# --- reviewing conversations --------------------------------------------------------------------


@pytest.fixture
def review_set(alice, bob):
    """Conversations of alice and bob in every state the review filters tell apart."""
    helper = SystemPrompt(name="Helper", text="v1")
    prompts.system_prompt_save(prompt=helper, user=None)
    coder = SystemPrompt(name="Coder", text="code")
    prompts.system_prompt_save(prompt=coder, user=None)

    ok = services.conversation_create(owner=alice, preset_id=helper.pk)
    _exchange(ok, "hi", "hello")
    _record(alice, "0.005", ok)

    helper.text = "v2"
    prompts.system_prompt_save(prompt=helper, user=None)
    failed = services.conversation_create(owner=alice, model="claude-opus-5-5", preset_id=helper.pk)
    _exchange(failed, "hi", "", status=Message.Status.ERROR, error="Claude is overloaded.")
    _record(alice, "0.50", failed)

    streaming = services.conversation_create(owner=bob, preset_id=coder.pk)
    _exchange(streaming, "write", "def", status=Message.Status.STREAMING)
    _record(bob, "2.25", streaming)
    _record(bob, "0.001", streaming, kind="title")

    interrupted = services.conversation_create(owner=bob, preset_id=coder.pk)
    _exchange(interrupted, "write", "cla", status=Message.Status.INTERRUPTED)

    archived = services.conversation_create(owner=bob, preset_id=coder.pk)
    Conversation.objects.filter(pk=archived.pk).update(archived_at=timezone.now())
    deleted = services.conversation_create(owner=alice, preset_id=helper.pk)
    Conversation.objects.filter(pk=deleted.pk).update(deleted_at=timezone.now())
    Conversation.objects.filter(pk=ok.pk).update(created_at=timezone.now() - timedelta(days=40))
    return {
        "ok": ok.pk, "failed": failed.pk, "streaming": streaming.pk, "interrupted": interrupted.pk,
        "archived": archived.pk, "deleted": deleted.pk, "helper": helper, "coder": coder,
    }


def test_review_filters_return_the_right_conversations(admin_client, alice, bob, review_set):
    r = review_set
    url = reverse("admin:conversations_conversation_changelist")

    def listed(**params) -> set[int]:
        return _listed(admin_client.get(url, params))

    assert listed(owner__id__exact=alice.pk) == {r["ok"], r["failed"], r["deleted"]}
    assert listed(model__exact="claude-opus-5-5") == {r["failed"]}
    assert listed(preset__id__exact=r["coder"].pk) == {r["streaming"], r["interrupted"], r["archived"]}
    v1 = r["helper"].versions.get(number=1)
    assert listed(prompt_version__id__exact=v1.pk) == {r["ok"]}
    assert listed(state="errors") == {r["failed"]}
    assert listed(state="streaming") == {r["streaming"]}
    assert listed(state="interrupted") == {r["interrupted"]}
    assert listed(state="archived") == {r["archived"]}
    assert listed(state="deleted") == {r["deleted"]}
    assert r["archived"] not in listed(state="open") and r["ok"] in listed(state="open")
    assert listed(cost="free") == {r["interrupted"], r["archived"], r["deleted"]}
    assert listed(cost="lt-0.01") == {r["ok"]}
    assert listed(cost="0.10-1") == {r["failed"]}
    assert listed(cost="1-10") == {r["streaming"]}  # the title's cost counts too
    assert listed(cost="10+") == set()
    since = (timezone.now() - timedelta(days=7)).isoformat()
    assert r["ok"] not in listed(created_at__gte=since) and r["failed"] in listed(created_at__gte=since)
    assert listed(q="bob", state="streaming") == {r["streaming"]}


def test_review_list_shows_state_prompt_and_per_person_totals(admin_client, review_set):
    response = admin_client.get(reverse("admin:conversations_conversation_changelist"))
    html = response.content.decode()
    assert "Coder v1" in html and "Helper v2" in html and "interrupted" in html
    people = {row.username: row for row in response.context["people_totals"]}
    assert (people["bob"].conversations, people["bob"].messages, people["bob"].cost) == (3, 4, Decimal("2.25100000"))
    assert (people["alice"].conversations, people["alice"].messages, people["alice"].cost) == (3, 4, Decimal("0.50500000"))
    assert list(people) == ["bob", "alice"]  # most expensive first


def test_conversation_page_shows_every_message_in_order_read_only(admin_client, alice):
    conversation = services.conversation_create(owner=alice)
    asked, first = _exchange(conversation, "question <b>one</b>", "first answer", input_tokens=120, output_tokens=30, cost=Decimal("0.0012"))
    _retry_asked, retry = _exchange(conversation, "ignored", "", status=Message.Status.ERROR, error="Claude is <overloaded>.", error_code="overloaded")
    Message.objects.filter(pk=retry.pk).update(parent=asked)  # a regenerated reply: a branch
    Message.objects.filter(pk=_retry_asked.pk).delete()
    retry = Message.objects.get(pk=retry.pk)
    Conversation.objects.filter(pk=conversation.pk).update(current_leaf=retry)

    response = admin_client.get(reverse("admin:conversations_conversation_change", args=[conversation.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    assert html.index("question &lt;b&gt;one&lt;/b&gt;") < html.index("first answer") < html.index("Claude is &lt;overloaded&gt;.")
    assert f"#{asked.pk}" in html  # the branch parent of both replies
    assert "overloaded" in html and "120" in html
    assert 'name="messages-0-content"' not in html and "<textarea" not in html
    assert 'name="_save"' not in html


def test_admins_cannot_edit_conversation_or_message_content(admin_client, alice):
    conversation = services.conversation_create(owner=alice)
    _asked, reply = _exchange(conversation, "question", "the original answer")
    message_url = reverse("admin:conversations_message_change", args=[reply.pk])
    assert admin_client.post(message_url, {"content": "rewritten by an admin", "role": "assistant", "status": "complete"}).status_code == 403
    conversation_url = reverse("admin:conversations_conversation_change", args=[conversation.pk])
    assert admin_client.post(conversation_url, {"title": "renamed", "messages-TOTAL_FORMS": "1", "messages-INITIAL_FORMS": "1",
                                                "messages-0-id": reply.pk, "messages-0-content": "rewritten"}).status_code == 403
    reply.refresh_from_db()
    conversation.refresh_from_db()
    assert reply.content == "the original answer" and conversation.title == ""
    assert admin_client.get(reverse("admin:conversations_message_add")).status_code == 403
    assert admin_client.get(reverse("admin:conversations_conversation_add")).status_code == 403


def test_export_action_returns_json_of_the_selected_conversations_only(admin_client, alice, bob):
    first = services.conversation_create(owner=alice)
    _exchange(first, "what is 2+2?", "4", cost=Decimal("0.002"))
    _record(alice, "0.002", first)
    second = services.conversation_create(owner=bob)
    _exchange(second, "bob's question", "bob's answer")
    left_out = services.conversation_create(owner=bob)
    _exchange(left_out, "not selected", "not exported")

    response = admin_client.post(reverse("admin:conversations_conversation_changelist"),
                                 {"action": "export_json", "_selected_action": [first.pk, second.pk]})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json") and "attachment" in response["Content-Disposition"]
    data = json.loads(response.content)
    assert [c["admin"]["id"] for c in data["conversations"]] == [first.pk, second.pk]
    exported = data["conversations"][0]
    assert exported["admin"]["owner"]["username"] == "alice" and exported["admin"]["ledger_cost"] == "0.00200000"
    # The person-facing export format (exports.py), every branch included: re-importable as is.
    assert exported["format"] == "chatsite.conversation" and exported["scope"] == "all"
    assert [(m["id"], m["parent_id"], m["role"], m["content"]) for m in exported["messages"]] == [
        (1, None, "user", "what is 2+2?"), (2, 1, "assistant", "4"),
    ]
    assert exported["conversation"]["current_leaf_id"] == 2
    assert data["conversations"][1]["messages"][1]["content"] == "bob's answer"
    reimported = exports.conversation_import(owner=bob, raw=json.dumps(exported).encode()).conversation
    assert [m.content for m in selectors.conversation_thread(conversation=reimported)] == ["what is 2+2?", "4"]
    assert "not exported" not in response.content.decode()


def test_csv_export_has_a_row_per_message_and_defuses_formulas(admin_client, alice):
    conversation = services.conversation_create(owner=alice)
    _exchange(conversation, "=HYPERLINK(\"http://evil\")", "fine")
    response = admin_client.post(reverse("admin:conversations_conversation_changelist"),
                                 {"action": "export_csv", "_selected_action": [conversation.pk]})
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [r["content"] for r in rows] == ["'=HYPERLINK(\"http://evil\")", "fine"]


def test_user_list_shows_totals_per_person_without_n_plus_1(admin_client, alice, bob, django_assert_max_num_queries):
    conversation = services.conversation_create(owner=alice)
    _exchange(conversation, "q", "a")
    _record(alice, "1.25", conversation)
    _record(alice, "0.75")  # a deleted conversation's spend stays in the ledger
    url = reverse("admin:auth_user_changelist")
    with CaptureQueriesContext(connection) as few:
        response = admin_client.get(url)
    rows = {u.username: u for u in response.context["cl"].result_list}
    assert (rows["alice"].conversation_count, rows["alice"].message_count, rows["alice"].total_cost) == (1, 2, Decimal("2"))
    assert (rows["bob"].conversation_count, rows["bob"].message_count, rows["bob"].total_cost) == (0, 0, 0)
    assert "$2.00" in response.content.decode()

    for n in range(15):
        person = User.objects.create_user(username=f"person{n}")
        c = services.conversation_create(owner=person)
        _exchange(c, "q", "a")
        _record(person, "0.10", c)
    with django_assert_max_num_queries(len(few)):
        admin_client.get(url)


# --- accounts ----------------------------------------------------------------------------------


def test_deactivate_action_locks_the_person_out_but_not_the_admin_themself(admin_client, admin_user, alice, bob, client):
    url = reverse("admin:auth_user_changelist")
    admin_client.post(url, {"action": "deactivate", "_selected_action": [alice.pk, admin_user.pk]})
    alice.refresh_from_db()
    admin_user.refresh_from_db()
    assert not alice.is_active and admin_user.is_active
    assert not client.login(request=HttpRequest(), username="alice", password="alice-pass-123")  # axes needs a request

    admin_client.post(url, {"action": "activate", "_selected_action": [alice.pk]})
    alice.refresh_from_db()
    assert alice.is_active


def test_deactivated_persons_session_and_api_token_stop_working(client, alice):
    _token, secret = tokens.api_token_create(user=alice, name="script")
    client.force_login(alice)
    assert client.get(reverse("chat")).status_code == 200
    account_services.users_set_active(users=User.objects.filter(pk=alice.pk), active=False)
    assert client.get(reverse("chat")).status_code == 302  # to the login page
    assert tokens.api_token_authenticate(secret=secret) is None
    assert client.get("/api/v1/prompts", headers={"Authorization": f"Bearer {secret}"}).status_code == 401


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("hub_cleanup")
async def test_deactivated_persons_websocket_is_closed_and_refused(alice):
    from channels.testing import WebsocketCommunicator

    from chatsite.asgi import application

    conversation = await database_sync_to_async(services.conversation_create)(owner=alice)
    # Two sessions from before the deactivation (database_sync_to_async: its connection is closed after use).
    cookies = [await database_sync_to_async(session_cookie_for)(alice) for _ in range(2)]

    def socket(cookie: str) -> WebsocketCommunicator:
        headers = [(b"origin", b"http://localhost"), (b"host", b"localhost"), (b"cookie", f"sessionid={cookie}".encode())]
        return WebsocketCommunicator(application, f"/ws/conversations/{conversation.pk}/", headers=headers)

    open_tab = socket(cookies[0])
    connected, _ = await open_tab.connect(timeout=5)
    assert connected
    assert json.loads(await open_tab.receive_from(timeout=5))["type"] == "hello"

    await database_sync_to_async(account_services.users_set_active)(users=User.objects.filter(pk=alice.pk), active=False)
    assert await open_tab.receive_output(timeout=5) == {"type": "websocket.close", "code": 4401}
    await open_tab.disconnect()

    again = socket(cookies[1])
    connected, _ = await again.connect(timeout=5)
    assert connected  # accepted, then closed: browsers see the code (a refused handshake is 1006)
    assert await again.receive_output(timeout=5) == {"type": "websocket.close", "code": 4401}
    await again.disconnect()


# --- who may use the admin -----------------------------------------------------------------------


def test_non_staff_are_sent_to_the_admin_login(client, alice):
    client.force_login(alice)
    for url in (reverse("admin:conversations_conversation_changelist"), reverse("admin:conversations_systemprompt_changelist")):
        response = client.get(url)
        assert response.status_code == 302 and reverse("admin:login") in response["Location"]


def test_staff_without_permissions_cannot_see_conversations(client, staff, alice):
    conversation = services.conversation_create(owner=alice)
    _exchange(conversation, "private question", "private answer")
    prompt = SystemPrompt.objects.create(name="P")
    client.force_login(staff)
    for url in (
        reverse("admin:conversations_conversation_changelist"),
        reverse("admin:conversations_conversation_change", args=[conversation.pk]),
        reverse("admin:conversations_message_changelist"),
        reverse("admin:conversations_systemprompt_versions", args=[prompt.pk]),
        reverse("admin:conversations_systemprompt_preview", args=[prompt.pk]),
        reverse("admin:auth_user_changelist"),
    ):
        response = client.get(url)
        assert response.status_code == 403, url
        assert b"private" not in response.content
    export = client.post(reverse("admin:conversations_conversation_changelist"), {"action": "export_json", "_selected_action": [conversation.pk]})
    assert export.status_code == 403


def test_staff_with_view_permission_reads_but_cannot_change(client, staff, alice):
    staff.user_permissions.add(*Permission.objects.filter(codename__in=["view_conversation", "view_message"]))
    conversation = services.conversation_create(owner=alice)
    _exchange(conversation, "question", "answer")
    client.force_login(staff)
    url = reverse("admin:conversations_conversation_change", args=[conversation.pk])
    assert client.get(url).status_code == 200
    assert client.post(url, {"title": "changed"}).status_code == 403
    listing = client.post(reverse("admin:conversations_conversation_changelist"), {"action": "export_json", "_selected_action": [conversation.pk]})
    assert listing.status_code == 200 and json.loads(listing.content)["conversations"][0]["admin"]["id"] == conversation.pk
