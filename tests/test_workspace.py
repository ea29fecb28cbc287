"""The conversation workspace: sidebar (pins, recency groups, keyset pages), rename, archive,
delete with undo and the purge of deleted conversations; owner-scoped everywhere."""

from __future__ import annotations

import threading
import zoneinfo
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.conf import settings as django_settings
from django.db import connection, connections
from django.http import Http404
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from conversations import search, selectors, services, sidebar, tasks, workspace
from conversations.errors import ChatError
from conversations.llm import Usage
from conversations.models import Conversation, Message, Summary, UsageRecord
from conversations.pricing import cost_of

pytestmark = pytest.mark.django_db

JSON = {"HTTP_ACCEPT": "application/json"}
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


@pytest.fixture
def alice_client(client, alice):
    client.force_login(alice)
    return client


@pytest.fixture
def bob_client(bob):
    client = Client()
    client.force_login(bob)
    return client


def _conversation(owner, title: str = "", *, updated_at: datetime | None = None, **state) -> Conversation:
    conversation = services.conversation_create(owner=owner)
    changes = {"title": title, **state}
    if updated_at is not None:
        changes["updated_at"] = updated_at
    Conversation.objects.filter(pk=conversation.pk).update(**changes)
    conversation.refresh_from_db()
    return conversation


def _exchange(conversation, question: str = "question", answer: str = "answer") -> tuple[Message, Message]:
    user = Message.objects.create(conversation=conversation, role="user", content=question)
    reply = Message.objects.create(conversation=conversation, parent=user, role="assistant", content=answer, model=conversation.model)
    Conversation.objects.filter(pk=conversation.pk).update(current_leaf=reply)
    return user, reply


def _ids(page: sidebar.SidebarPage) -> list[int]:
    return [item.id for item in page.items]


# --- pins and order ----------------------------------------------------------------------------


def test_pinned_conversations_come_first_then_newest_activity(alice):
    old = _conversation(alice, "old", updated_at=NOW - timedelta(days=30))
    mid = _conversation(alice, "mid", updated_at=NOW - timedelta(days=2))
    new = _conversation(alice, "new", updated_at=NOW - timedelta(hours=1))
    assert _ids(sidebar.sidebar_page(user=alice, now=NOW)) == [new.pk, mid.pk, old.pk]

    workspace.conversation_pin(conversation=old)
    page = sidebar.sidebar_page(user=alice, now=NOW)
    assert _ids(page) == [old.pk, new.pk, mid.pk]
    assert [(key, [i.id for i in items]) for key, _, items in page.groups()] == [
        ("pinned", [old.pk]), ("today", [new.pk]), ("week", [mid.pk]),
    ]

    workspace.conversation_unpin(conversation=old)
    assert _ids(sidebar.sidebar_page(user=alice, now=NOW)) == [new.pk, mid.pk, old.pk]


def test_pinning_archiving_and_renaming_are_not_activity(alice):
    conversation = _conversation(alice, "steady", updated_at=NOW - timedelta(days=3))
    workspace.conversation_pin(conversation=conversation)
    workspace.conversation_archive(conversation=conversation)
    workspace.conversation_unarchive(conversation=conversation)
    services.conversation_rename(conversation=conversation, title="renamed")
    conversation.refresh_from_db()
    assert conversation.updated_at == NOW - timedelta(days=3)
    assert conversation.pinned_at is not None


def test_several_pinned_are_ordered_by_activity_too(alice):
    a = _conversation(alice, "a", updated_at=NOW - timedelta(days=9))
    b = _conversation(alice, "b", updated_at=NOW - timedelta(days=1))
    workspace.conversation_pin(conversation=b)
    workspace.conversation_pin(conversation=a)
    assert _ids(sidebar.sidebar_page(user=alice, now=NOW))[:2] == [b.pk, a.pk]


# --- recency groups ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("updated_at", "group"),
    [
        (datetime(2026, 3, 10, 0, 0, tzinfo=UTC), "today"),  # midnight, start of today
        (datetime(2026, 3, 10, 13, 0, tzinfo=UTC), "today"),  # a clock a little ahead
        (datetime(2026, 3, 9, 23, 59, 59, tzinfo=UTC), "week"),  # yesterday
        (datetime(2026, 3, 3, 0, 0, tzinfo=UTC), "week"),  # 7 days before today
        (datetime(2026, 3, 2, 23, 59, 59, tzinfo=UTC), "older"),
        (datetime(2025, 3, 10, 12, 0, tzinfo=UTC), "older"),
    ],
)
def test_recency_group_boundaries_in_utc(updated_at, group):
    assert sidebar.recency_group(updated_at, now=NOW, tz=zoneinfo.ZoneInfo("UTC")) == group


def test_groups_follow_the_persons_time_zone():
    # 03:00 UTC on the 10th is still the evening of the 9th in Los Angeles (UTC-7 then).
    evening = datetime(2026, 3, 10, 3, 0, tzinfo=UTC)
    assert sidebar.recency_group(evening, now=NOW, tz=zoneinfo.ZoneInfo("UTC")) == "today"
    assert sidebar.recency_group(evening, now=NOW, tz=zoneinfo.ZoneInfo("America/Los_Angeles")) == "week"
    # Tokyo is already on the 10th at 16:00 UTC on the 9th.
    assert sidebar.recency_group(datetime(2026, 3, 9, 16, 0, tzinfo=UTC), now=NOW, tz=zoneinfo.ZoneInfo("Asia/Tokyo")) == "today"


def test_the_time_zone_cookie_decides_the_servers_groups(alice_client, alice):
    now = timezone.now()
    # Yesterday late evening in Los Angeles, but already today in UTC or the other way round:
    # find an instant that is today in one zone and not in the other.
    la = zoneinfo.ZoneInfo("America/Los_Angeles")
    start_of_day_la = now.astimezone(la).replace(hour=0, minute=0, second=0, microsecond=0)
    instant = start_of_day_la - timedelta(minutes=1)  # yesterday in Los Angeles
    conversation = _conversation(alice, "late night", updated_at=instant)
    alice_client.cookies["chatsite_tz"] = "America/Los_Angeles"
    items = alice_client.get(reverse("sidebar_json")).json()["items"]
    assert [i["group"] for i in items if i["id"] == conversation.pk] == ["week"]
    alice_client.cookies["chatsite_tz"] = "Not/AZone"  # unknown: the server's TIME_ZONE
    items = alice_client.get(reverse("sidebar_json")).json()["items"]
    expected = sidebar.recency_group(instant, now=timezone.now(), tz=zoneinfo.ZoneInfo(django_settings.TIME_ZONE))
    assert [i["group"] for i in items if i["id"] == conversation.pk] == [expected]


def test_sidebar_html_shows_group_headings_and_pinned_first(alice_client, alice):
    _conversation(alice, "ancient chat", updated_at=timezone.now() - timedelta(days=40))
    pinned = _conversation(alice, "pinned chat", updated_at=timezone.now() - timedelta(days=3))
    workspace.conversation_pin(conversation=pinned)
    _conversation(alice, "fresh chat")
    html = alice_client.get(reverse("chat")).content.decode()
    assert html.index(">Pinned<") < html.index("pinned chat") < html.index(">Today<") < html.index("fresh chat")
    assert html.index("fresh chat") < html.index(">Older<") < html.index("ancient chat")
    assert "Previous 7 days" not in html  # empty groups are left out


# --- keyset pages --------------------------------------------------------------------------------


def test_pages_cover_every_conversation_once_even_with_equal_timestamps(alice_client, alice):
    same = timezone.now() - timedelta(days=1)
    made = Conversation.objects.bulk_create([Conversation(owner=alice, model="m", title=f"c{i}") for i in range(130)])
    Conversation.objects.filter(owner=alice).update(updated_at=same)  # every row ties on updated_at
    seen: list[int] = []
    data = alice_client.get(reverse("sidebar_json")).json()
    pages = 1
    seen += [i["id"] for i in data["items"]]
    while data["next_cursor"]:
        data = alice_client.get(reverse("sidebar_json"), {"cursor": data["next_cursor"]}).json()
        seen += [i["id"] for i in data["items"]]
        pages += 1
    assert pages == 3
    assert seen == sorted((c.pk for c in made), reverse=True)


def test_a_bad_cursor_is_a_400(alice_client):
    for cursor in ("nope", "1.2.3", "x" * 100, "-1.abc"):
        response = alice_client.get(reverse("sidebar_json"), {"cursor": cursor})
        assert response.status_code == 400, cursor


def test_no_js_older_link_shows_the_next_page(alice_client, alice):
    Conversation.objects.bulk_create([Conversation(owner=alice, model="m", title=f"chat number {i:03d}") for i in range(60)])
    html = alice_client.get(reverse("chat")).content.decode()
    assert "chat number 059" in html and "chat number 005" not in html
    cursor = sidebar.sidebar_page(user=alice).next_cursor
    assert f'href="?before={cursor}"' in html
    older = alice_client.get(reverse("chat"), {"before": cursor}).content.decode()
    assert "chat number 005" in older and "chat number 059" not in older


BIG = 10_000


@pytest.fixture
def ten_thousand(alice, bob):
    base = timezone.now() - timedelta(days=400)
    rows = [Conversation(owner=alice, model="m", title=f"conversation {i}") for i in range(BIG)]
    Conversation.objects.bulk_create(rows, batch_size=2000)
    # Their activity spread over 400 days, in ten blocks of equal timestamps (ties included).
    ids = list(Conversation.objects.filter(owner=alice).order_by("pk").values_list("pk", flat=True))
    step = len(ids) // 10
    for n in range(10):
        Conversation.objects.filter(pk__gte=ids[n * step], pk__lte=ids[(n + 1) * step - 1]).update(updated_at=base + timedelta(days=40 * n))
    Conversation.objects.bulk_create([Conversation(owner=bob, model="m", title=f"bob {i}") for i in range(50)])
    for c in Conversation.objects.filter(owner=alice).order_by("pk")[:3]:
        workspace.conversation_pin(conversation=c)
    return ids


def test_sidebar_pages_take_constant_queries_with_10000_conversations(alice_client, alice, ten_thousand, django_assert_num_queries):
    url = reverse("sidebar_json")
    with CaptureQueriesContext(connection) as first_queries:
        first = alice_client.get(url).json()
    # Session, user, pinned, the page: and no more.
    first_count = len(first_queries)
    assert first_count <= 4, [q["sql"] for q in first_queries]
    assert len(first["items"]) == sidebar.PAGE_SIZE + 3 and all(i["pinned"] for i in first["items"][:3])
    cursor = first["next_cursor"]
    for _ in range(60):  # deep into the list
        page = alice_client.get(url, {"cursor": cursor}).json()
        cursor = page["next_cursor"]
    with django_assert_num_queries(first_count - 1):  # no pinned query after the first page
        deep = alice_client.get(url, {"cursor": cursor}).json()
    assert len(deep["items"]) == sidebar.PAGE_SIZE
    assert not any(i["title"].startswith("bob") for i in deep["items"])
    updated = [i["updated_at"] for i in deep["items"]]
    assert updated == sorted(updated, reverse=True)


def test_chat_page_takes_bounded_queries_with_10000_conversations(alice_client, ten_thousand, django_assert_max_num_queries):
    with django_assert_max_num_queries(10):
        response = alice_client.get(reverse("chat"))
    html = response.content.decode()
    assert html.count('class="conv-item') == sidebar.PAGE_SIZE + 3
    assert 'id="conv-more"' in html


def test_the_main_list_page_uses_its_index(alice, ten_thousand):
    """The page query is an index range scan, not a sort of all 10,000 rows."""
    qs = sidebar._mine(alice).filter(archived_at__isnull=True, pinned_at__isnull=True)[: sidebar.PAGE_SIZE + 1]
    plan = qs.explain()
    assert "conversation_main_list" in plan, plan
    assert "TEMP B-TREE" not in plan.upper() and "Sort" not in plan, plan


# --- rename -------------------------------------------------------------------------------------


def test_rename_sets_title_source_user_so_automatic_titles_never_overwrite(alice_client, alice):
    conversation = _conversation(alice, "Placeholder from first message")
    Conversation.objects.filter(pk=conversation.pk).update(title_source=Conversation.TitleSource.FIRST_MESSAGE)
    response = alice_client.post(reverse("conversation_rename", args=[conversation.pk]), {"title": "  My   trip  plans "}, **JSON)
    assert response.status_code == 200
    assert response.json()["item"]["title"] == "My trip plans"
    conversation.refresh_from_db()
    assert (conversation.title, conversation.title_source) == ("My trip plans", Conversation.TitleSource.USER)
    from conversations import titles

    # The title task's own guard: it only replaces placeholders.
    assert titles.name_conversation(conversation.pk) is None
    assert not Conversation.objects.filter(pk=conversation.pk, title_source__in=titles.PLACEHOLDER_SOURCES).exists()


def test_rename_refuses_an_empty_title(alice_client, alice):
    conversation = _conversation(alice, "keep me")
    response = alice_client.post(reverse("conversation_rename", args=[conversation.pk]), {"title": "   "}, **JSON)
    assert response.status_code == 400 and response.json()["code"] == "empty"
    conversation.refresh_from_db()
    assert conversation.title == "keep me"


def test_rename_without_javascript_has_its_own_page(alice_client, alice):
    conversation = _conversation(alice, "old name")
    page = alice_client.get(reverse("conversation_rename", args=[conversation.pk]), {"next": "/chat/"})
    assert page.status_code == 200 and 'value="old name"' in page.content.decode()
    response = alice_client.post(reverse("conversation_rename", args=[conversation.pk]), {"title": "new name", "next": "/chat/"})
    assert response.status_code == 302 and response["Location"] == "/chat/"
    conversation.refresh_from_db()
    assert conversation.title == "new name"


def test_next_must_be_this_site(alice_client, alice):
    conversation = _conversation(alice, "x")
    response = alice_client.post(reverse("conversation_pin", args=[conversation.pk]), {"next": "https://evil.example/"})
    assert response.status_code == 302 and response["Location"] == reverse("chat")


# --- pin / archive views --------------------------------------------------------------------------


def test_pin_and_unpin_answer_json_for_the_sidebar(alice_client, alice):
    conversation = _conversation(alice, "pin me")
    data = alice_client.post(reverse("conversation_pin", args=[conversation.pk]), **JSON).json()
    assert data["item"]["pinned"] is True and data["item"]["group"] == "pinned"
    data = alice_client.post(reverse("conversation_unpin", args=[conversation.pk]), **JSON).json()
    assert data["item"]["pinned"] is False and data["item"]["group"] == "today"


def test_pin_without_javascript_goes_back(alice_client, alice):
    conversation = _conversation(alice, "pin me")
    response = alice_client.post(reverse("conversation_pin", args=[conversation.pk]), {"next": f"/chat/{conversation.pk}/"})
    assert response.status_code == 302 and response["Location"] == f"/chat/{conversation.pk}/"
    assert Conversation.objects.get(pk=conversation.pk).pinned_at is not None


def test_workspace_writes_need_post_and_csrf(alice, alice_client):
    conversation = _conversation(alice, "x")
    assert alice_client.get(reverse("conversation_pin", args=[conversation.pk])).status_code == 405
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(alice)
    for name in ("conversation_pin", "conversation_archive", "conversation_delete", "conversation_rename"):
        assert strict.post(reverse(name, args=[conversation.pk]), {"title": "t"}, **JSON).status_code == 403, name
    conversation.refresh_from_db()
    assert conversation.pinned_at is None and conversation.archived_at is None and conversation.deleted_at is None


def test_archive_leaves_the_main_list_and_shows_on_the_archived_page(alice_client, alice):
    keep = _conversation(alice, "kept chat")
    gone = _conversation(alice, "archived chat")
    data = alice_client.post(reverse("conversation_archive", args=[gone.pk]), **JSON).json()
    assert data["item"]["archived"] is True
    assert _ids(sidebar.sidebar_page(user=alice)) == [keep.pk]
    assert list(selectors.conversation_list_for_user(user=alice)) == [keep]
    html = alice_client.get(reverse("chat")).content.decode()
    assert "archived chat" not in html
    archived = alice_client.get(reverse("conversations_archived")).content.decode()
    assert "archived chat" in archived and "kept chat" not in archived.split('id="archived-list"')[1]
    # Still readable, still searchable (marked).
    detail = alice_client.get(reverse("conversation_detail", args=[gone.pk]))
    assert detail.status_code == 200 and 'class="archived-note"' in detail.content.decode()
    [result] = search.search_for_user(user=alice, query="archived")
    assert result.conversation_id == gone.pk and result.archived

    data = alice_client.post(reverse("conversation_unarchive", args=[gone.pk]), **JSON).json()
    assert data["item"]["archived"] is False
    assert set(_ids(sidebar.sidebar_page(user=alice))) == {keep.pk, gone.pk}
    assert "Nothing archived." in alice_client.get(reverse("conversations_archived")).content.decode()


def test_a_pinned_conversation_that_is_archived_leaves_the_pins(alice):
    conversation = _conversation(alice, "both")
    workspace.conversation_pin(conversation=conversation)
    workspace.conversation_archive(conversation=conversation)
    assert _ids(sidebar.sidebar_page(user=alice)) == []
    assert _ids(sidebar.archived_page(user=alice)) == [conversation.pk]


# --- delete, undo, purge --------------------------------------------------------------------------


def test_a_deleted_conversation_is_404_everywhere_at_once(alice_client, alice):
    conversation = _conversation(alice, "secret plans")
    _exchange(conversation, "where is the treasure", "under the palm tree")
    response = alice_client.post(reverse("conversation_delete", args=[conversation.pk]), **JSON)
    assert response.status_code == 200
    assert response.json()["undo_url"] == reverse("conversation_undo_delete", args=[conversation.pk])
    assert Conversation.objects.filter(pk=conversation.pk).exists()  # restorable for a few seconds

    for url in (
        reverse("conversation_detail", args=[conversation.pk]),
        reverse("conversation_summaries", args=[conversation.pk]),
        reverse("conversation_rename", args=[conversation.pk]),
    ):
        assert alice_client.get(url).status_code == 404, url
    for name in ("conversation_pin", "conversation_archive", "conversation_delete", "conversation_rename"):
        assert alice_client.post(reverse(name, args=[conversation.pk]), {"title": "x"}).status_code == 404, name
    with pytest.raises(Http404):
        selectors.conversation_get_for_user(user=alice, conversation_id=conversation.pk)
    assert list(selectors.conversation_list_for_user(user=alice)) == []
    assert _ids(sidebar.sidebar_page(user=alice)) == [] and _ids(sidebar.archived_page(user=alice)) == []
    assert search.search_for_user(user=alice, query="treasure") == []
    html = alice_client.get(reverse("chat")).content.decode()
    assert "secret plans" not in html.split('id="conv-list"')[1].split('id="undo-toast"')[0]
    assert "Deleted “secret plans”." in html  # only in the undo offer


def test_sending_to_a_deleted_conversation_is_refused(alice):
    conversation = _conversation(alice, "gone")
    workspace.conversation_delete(conversation=conversation)
    with pytest.raises(ChatError) as refused:
        services.message_send(conversation=conversation, content="hello?")
    assert refused.value.code == "not_found"
    assert not Message.objects.filter(conversation=conversation).exists()


def test_undo_restores_it_where_it_was(alice_client, alice):
    older = _conversation(alice, "older", updated_at=timezone.now() - timedelta(days=2))
    conversation = _conversation(alice, "restore me", updated_at=timezone.now() - timedelta(days=1))
    workspace.conversation_pin(conversation=older)
    alice_client.post(reverse("conversation_delete", args=[conversation.pk]), **JSON)
    response = alice_client.post(reverse("conversation_undo_delete", args=[conversation.pk]), **JSON)
    assert response.status_code == 200 and response.json()["item"]["title"] == "restore me"
    assert _ids(sidebar.sidebar_page(user=alice)) == [older.pk, conversation.pk]
    assert alice_client.get(reverse("conversation_detail", args=[conversation.pk])).status_code == 200
    # Once is enough: there is nothing left to undo.
    assert alice_client.post(reverse("conversation_undo_delete", args=[conversation.pk]), **JSON).status_code == 404


def test_undo_is_too_late_after_the_window(alice_client, alice, settings):
    settings.CHATSITE_UNDO_DELETE_SECONDS = 10
    conversation = _conversation(alice, "too late")
    alice_client.post(reverse("conversation_delete", args=[conversation.pk]), **JSON)
    Conversation.objects.filter(pk=conversation.pk).update(deleted_at=timezone.now() - timedelta(seconds=11))
    response = alice_client.post(reverse("conversation_undo_delete", args=[conversation.pk]), **JSON)
    assert response.status_code == 404 and response.json()["code"] == "not_found"
    assert Conversation.objects.get(pk=conversation.pk).deleted_at is not None


def test_delete_without_javascript_offers_undo_on_the_next_page(alice_client, alice):
    conversation = _conversation(alice, "no js here")
    response = alice_client.post(reverse("conversation_delete", args=[conversation.pk]), {"next": f"/chat/{conversation.pk}/"})
    assert response.status_code == 302 and response["Location"] == reverse("chat")  # its own page is gone
    html = alice_client.get(reverse("chat")).content.decode()
    undo = reverse("conversation_undo_delete", args=[conversation.pk])
    assert f'action="{undo}"' in html and "Deleted “no js here”." in html
    response = alice_client.post(undo)
    assert response.status_code == 302 and response["Location"] == reverse("conversation_detail", args=[conversation.pk])
    assert 'id="undo-toast" role="status" hidden' in alice_client.get(reverse("chat")).content.decode()


def test_the_conversation_pages_own_delete_is_the_soft_delete(alice_client, alice):
    conversation = _conversation(alice, "page delete")
    response = alice_client.post(reverse("conversation_delete", args=[conversation.pk]))
    assert response.status_code == 302
    assert Conversation.objects.get(pk=conversation.pk).deleted_at is not None


def test_purge_removes_rows_after_the_delay_but_keeps_the_spend(alice, settings):
    settings.CHATSITE_UNDO_DELETE_SECONDS = 10
    conversation = _conversation(alice, "costly")
    question, reply = _exchange(conversation)
    Summary.objects.create(conversation=conversation, upto=reply, text="summary", model="m")
    record = UsageRecord.objects.create(
        user=alice, conversation=conversation, message=reply, kind="reply", model="m", cost=Decimal("0.42"), uncached_cost=Decimal("0.5"),
    )
    kept = _conversation(alice, "not deleted")
    workspace.conversation_delete(conversation=conversation)
    deleted_at = Conversation.objects.get(pk=conversation.pk).deleted_at

    assert workspace.conversations_purge_deleted(now=deleted_at + timedelta(seconds=9)) == 0
    assert Conversation.objects.filter(pk=conversation.pk).exists()

    assert workspace.conversations_purge_deleted(now=deleted_at + timedelta(seconds=11)) == 1
    assert not Conversation.objects.filter(pk=conversation.pk).exists()
    assert not Message.objects.filter(pk__in=[question.pk, reply.pk]).exists()
    assert not Summary.objects.filter(conversation_id=conversation.pk).exists()
    record.refresh_from_db()
    assert (record.conversation_id, record.message_id, record.cost) == (None, None, Decimal("0.42"))
    assert Conversation.objects.filter(pk=kept.pk).exists()
    assert workspace.conversations_purge_deleted(now=deleted_at + timedelta(seconds=60)) == 0  # idempotent


def test_the_beat_task_purges(alice, settings):
    conversation = _conversation(alice, "old deletion")
    Conversation.objects.filter(pk=conversation.pk).update(deleted_at=timezone.now() - timedelta(seconds=settings.CHATSITE_UNDO_DELETE_SECONDS + 5))
    assert tasks.purge_deleted_conversations() == 1
    assert not Conversation.objects.filter(pk=conversation.pk).exists()
    schedule = django_settings.CELERY_BEAT_SCHEDULE["purge-deleted-conversations"]
    assert schedule["task"] == "conversations.tasks.purge_deleted_conversations"


def test_an_undone_delete_is_never_purged(alice):
    conversation = _conversation(alice, "saved")
    workspace.conversation_delete(conversation=conversation)
    workspace.conversation_undo_delete(user=alice, conversation_id=conversation.pk)
    assert workspace.conversations_purge_deleted(now=timezone.now() + timedelta(hours=1)) == 0
    assert Conversation.objects.filter(pk=conversation.pk, deleted_at__isnull=True).exists()


postgres_only = pytest.mark.skipif("connection.vendor != 'postgresql'", reason="row locks are PostgreSQL's (SQLite serialises writers)")


@postgres_only
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("removal", ["api_delete", "purge"])
@pytest.mark.parametrize("reply", ["new", "continued"])
def test_a_conversation_deleted_for_good_while_its_reply_is_stored_goes_and_its_cost_stays(alice, removal, reply):
    """The reply's final write has updated its message when the deletion starts; then it goes on
    to the conversation row and the ledger. Both must end: the conversation gone, the reply's
    cost kept. (A finish that took the message row before the conversation row deadlocked with
    the delete, and PostgreSQL aborted one of them; one written statement by statement lost
    its ledger entry to the deleted conversation's foreign key.)"""
    conversation = services.conversation_create(owner=alice)
    _, _, spec = services.message_send(conversation=conversation, content="a long question")
    if removal == "purge":
        Conversation.objects.filter(pk=conversation.pk).update(deleted_at=timezone.now() - timedelta(hours=1))
    usage = Usage(input_tokens=100, output_tokens=20)
    holds_reply, go = threading.Event(), threading.Event()
    deleter_pid: list[int] = []
    deleter_done = threading.Event()
    errors: list[BaseException] = []

    def pause_after_the_message_update(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if sql.startswith('UPDATE "conversations_message"'):
            holds_reply.set()
            go.wait(10)
        return result

    def finishing() -> None:
        try:
            with connection.execute_wrapper(pause_after_the_message_update):
                if reply == "new":
                    services.generation_finish_many([services.Finish(
                        message_id=spec.message_id, conversation_id=spec.conversation_id, generation_id=spec.generation_id,
                        content="the answer", status=Message.Status.STOPPED, usage=usage, owner_id=alice.pk, prices=spec.prices,
                    )])
                else:
                    services.generation_finish(
                        message_id=spec.message_id, conversation_id=spec.conversation_id, generation_id=spec.generation_id,
                        content="the answer", status=Message.Status.STOPPED, usage=usage, owner_id=alice.pk, prices=spec.prices,
                    )
        except BaseException as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)
        finally:
            holds_reply.set()
            connections.close_all()

    def deleting() -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                deleter_pid.append(cursor.fetchone()[0])
            if removal == "api_delete":
                workspace.conversation_destroy(conversation=conversation)
            else:
                workspace.conversations_purge_deleted(older_than=0)
        except BaseException as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)
        finally:
            deleter_done.set()
            connections.close_all()

    finisher = threading.Thread(target=finishing)
    finisher.start()
    assert holds_reply.wait(10)
    deleter = threading.Thread(target=deleting)
    deleter.start()
    # Let the deletion run until it waits for a lock (or ends), then let the reply go on.
    for _ in range(500):
        if deleter_done.is_set():
            break
        if deleter_pid:
            with connection.cursor() as cursor:
                cursor.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [deleter_pid[0]])
                if cursor.fetchone()[0] == "Lock":
                    break
        deleter_done.wait(0.02)
    go.set()
    finisher.join(15)
    deleter.join(15)

    assert errors == []
    if removal == "purge":
        workspace.conversations_purge_deleted(older_than=0)  # what a purge that found the row busy left for the next run
    assert not Conversation.objects.filter(pk=conversation.pk).exists()
    assert list(UsageRecord.objects.filter(user=alice).values_list("cost", flat=True)) == [cost_of(usage, spec.prices).total]


# --- owner scoping --------------------------------------------------------------------------------


def test_bob_gets_404_on_every_workspace_url_of_alice(alice, bob_client):
    conversation = _conversation(alice, "alice's own")
    _exchange(conversation, "alice question", "alice answer")
    deleted = _conversation(alice, "alice deleted")
    workspace.conversation_delete(conversation=deleted)
    posts = ["conversation_pin", "conversation_unpin", "conversation_archive", "conversation_unarchive", "conversation_delete", "conversation_rename"]
    for name in posts:
        for accept in ({}, JSON):
            response = bob_client.post(reverse(name, args=[conversation.pk]), {"title": "bob was here"}, **accept)
            assert response.status_code == 404, (name, accept)
    for accept in ({}, JSON):
        assert bob_client.post(reverse("conversation_undo_delete", args=[deleted.pk]), **accept).status_code == 404
    assert bob_client.get(reverse("conversation_rename", args=[conversation.pk])).status_code == 404
    assert bob_client.get(reverse("conversation_detail", args=[conversation.pk])).status_code == 404
    conversation.refresh_from_db()
    assert conversation.title == "alice's own" and conversation.pinned_at is None and conversation.archived_at is None
    assert conversation.deleted_at is None
    assert Conversation.objects.get(pk=deleted.pk).deleted_at is not None
    # Nor does anything of alice's show in bob's lists or search.
    assert bob_client.get(reverse("sidebar_json")).json()["items"] == []
    assert "alice" not in bob_client.get(reverse("conversations_archived")).content.decode()
    assert bob_client.get(reverse("conversation_search_json"), {"q": "alice"}).json()["results"] == []


def test_workspace_pages_need_login(client, alice):
    conversation = _conversation(alice, "x")
    for url in (reverse("sidebar_json"), reverse("conversations_archived"), reverse("conversation_search"), reverse("conversation_search_json"),
                reverse("conversation_rename", args=[conversation.pk])):
        response = client.get(url)
        assert response.status_code == 302 and reverse("login") in response["Location"], url
    assert client.post(reverse("conversation_pin", args=[conversation.pk])).status_code == 302
    assert Conversation.objects.get(pk=conversation.pk).pinned_at is None


# --- websocket and API: deleted is gone, its running reply is stopped -------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("hub_cleanup")
async def test_deleting_stops_the_running_reply_and_closes_every_door(llm, token, alice):
    from channels.db import database_sync_to_async as sync_to_async  # closes its connection after use
    from django.test import AsyncClient

    from tests.conftest import Socket, stored_message

    llm.script([{"text": "word " * 400, "tps": 50}], match=token)
    conversation = await sync_to_async(services.conversation_create)(owner=alice)
    sock = Socket(alice, conversation.pk)
    assert (await sock.connect())[0]
    created = await sock.send_message(f"go {token}")
    gid = created["reply"]["generation_id"]
    while not any(f["type"] == "delta" for f in sock.frames):
        await sock.receive()

    client = AsyncClient()
    await client.aforce_login(alice)
    response = await client.post(reverse("conversation_delete", args=[conversation.pk]), headers={"Accept": "application/json"})
    assert response.status_code == 200

    streamed, end = await sock.follow_to_end(gid)
    assert end["message"]["status"] == "stopped"
    reply = await stored_message(created["reply"]["id"])
    assert reply.status == Message.Status.STOPPED and 0 < len(reply.content) < len("word " * 400)
    # Every tab of the person hears of it (sidebars drop it; this page says so).
    if not any(f["type"] == "conversation.updated" for f in sock.frames):
        await sock.receive_type("conversation.updated")
    updates = [f for f in sock.frames if f["type"] == "conversation.updated"]
    assert updates == [{"type": "conversation.updated", "conversation_id": conversation.pk, "deleted": True}]
    await sock.close()

    # A new socket is refused like any conversation that is not yours.
    again = Socket(alice, conversation.pk)
    connected, code = await again.connect()
    assert not connected and code == 4404
    # The API: the conversation is gone from the list and from its own URL.
    api = await client.get(f"/api/v1/conversations/{conversation.pk}")
    assert api.status_code == 404
    listed = await client.get("/api/v1/conversations")
    assert listed.status_code == 200 and listed.json()["count"] == 0


def test_a_deleted_conversation_is_neither_titled_nor_summarised(alice, monkeypatch):
    from conversations import compaction, llm, titles

    def no_call(**kwargs):
        raise AssertionError("Claude was called for a deleted conversation")

    monkeypatch.setattr(llm, "complete", no_call)
    conversation = _conversation(alice, "placeholder")
    Conversation.objects.filter(pk=conversation.pk).update(title_source=Conversation.TitleSource.FIRST_MESSAGE)
    _exchange(conversation, "a question " * 50, "an answer " * 50)
    workspace.conversation_delete(conversation=conversation)
    assert titles.name_conversation(conversation.pk) is None
    assert compaction.compact(conversation.pk) is None
    assert not UsageRecord.objects.exists()
