"""Reads. Every conversation read goes through an owner-scoped selector."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Exists, OuterRef, Q, QuerySet, Sum
from django.http import Http404

from .models import Conversation, LLMModel, Message, Summary, SystemPrompt, UsageRecord


def conversation_list_for_user(*, user: AbstractBaseUser, limit: int = 200) -> QuerySet[Conversation]:
    """The main list: newest activity first, without archived and deleted conversations (the
    sidebar itself pages through `sidebar.sidebar_page`)."""
    streaming = Message.objects.filter(conversation=OuterRef("pk"), status=Message.Status.STREAMING)
    mine = Conversation.objects.filter(owner=user, deleted_at__isnull=True, archived_at__isnull=True)
    return mine.annotate(is_generating=Exists(streaming)).order_by("-updated_at", "-id")[:limit]


def conversation_get_for_user(*, user: AbstractBaseUser, conversation_id: int) -> Conversation:
    """The person's own conversation, or Http404 — never someone else's, never a 403 that leaks existence."""
    if not getattr(user, "is_authenticated", False):
        raise Http404("No such conversation")
    try:
        # A deleted conversation is gone at once, even while it can still be restored.
        return Conversation.objects.get(pk=conversation_id, owner=user, deleted_at__isnull=True)
    except (Conversation.DoesNotExist, ValueError, TypeError):
        raise Http404("No such conversation") from None


def conversation_thread(*, conversation: Conversation, messages: list[Message] | None = None) -> list[Message]:
    """The messages the person sees, oldest first: the parent chain ending at `current_leaf`.

    One query for the whole conversation (none if the caller already has its `messages`);
    the walk happens in Python so branches (regenerated replies) need no recursive SQL.
    """
    if messages is None:
        messages = list(Message.objects.filter(conversation=conversation))
    by_id = {m.pk: m for m in messages}
    if not by_id:
        return []
    leaf_id = conversation.current_leaf_id
    if leaf_id not in by_id:
        leaf_id = max(by_id.values(), key=lambda m: (m.created_at, m.pk)).pk
    thread: list[Message] = []
    seen: set[int] = set()
    node = by_id.get(leaf_id)
    while node is not None and node.pk not in seen:
        seen.add(node.pk)
        thread.append(node)
        node = by_id.get(node.parent_id) if node.parent_id else None
    thread.reverse()
    return thread


# --- Branches: an edited message and a regenerated reply are siblings (same parent, same role).


@dataclass(frozen=True)
class Branch:
    """A message among its versions: `ids` oldest first, `index` its own place in them."""

    ids: tuple[int, ...]
    index: int

    @property
    def position(self) -> int:
        return self.index + 1

    @property
    def count(self) -> int:
        return len(self.ids)

    @property
    def previous_id(self) -> int | None:
        return self.ids[self.index - 1] if self.index > 0 else None

    @property
    def next_id(self) -> int | None:
        return self.ids[self.index + 1] if self.index + 1 < len(self.ids) else None


def thread_branches(*, thread: list[Message], messages: list[Message]) -> dict[int, Branch]:
    """Each thread message's versions, from the conversation's messages already loaded (no query)."""
    wanted = {(m.parent_id, m.role) for m in thread}
    versions: dict[tuple[int | None, str], list[Message]] = {}
    for m in messages:
        if (m.parent_id, m.role) in wanted:
            versions.setdefault((m.parent_id, m.role), []).append(m)
    ids = {key: tuple(m.pk for m in sorted(group, key=lambda m: (m.created_at, m.pk))) for key, group in versions.items()}
    return {m.pk: Branch(ids=ids[m.parent_id, m.role], index=ids[m.parent_id, m.role].index(m.pk)) for m in thread}


def conversation_thread_with_branches(*, conversation: Conversation, messages: list[Message] | None = None) -> list[Message]:
    """The visible thread with `.branch` (a Branch) set on every message, in the one query
    `conversation_thread` does: the page shows `< 2/3 >` without a query per message."""
    if messages is None:
        messages = list(Message.objects.filter(conversation=conversation))
    thread = conversation_thread(conversation=conversation, messages=messages)
    branches = thread_branches(thread=thread, messages=messages)
    for message in thread:
        message.branch = branches[message.pk]
    return thread


def message_with_branch(message: Message) -> Message:
    """Set `.branch` on one message (e.g. a regenerated reply): one query for its versions."""
    ids = tuple(
        Message.objects.filter(conversation_id=message.conversation_id, parent_id=message.parent_id, role=message.role)
        .order_by("created_at", "id").values_list("pk", flat=True)
    )
    message.branch = Branch(ids=ids, index=ids.index(message.pk)) if message.pk in ids else Branch(ids=(message.pk,), index=0)
    return message


def conversation_summaries_on_thread(*, conversation: Conversation, thread: list[Message]) -> list[Summary]:
    """The summaries whose cut is on the visible thread, oldest first (one query).

    A conversation has few summaries (one per compaction step), so they are filtered here
    rather than with an `IN` over every message of a long thread.
    """
    on_thread = {m.pk for m in thread}
    if not on_thread:
        return []
    return [s for s in Summary.objects.filter(conversation=conversation).order_by("created_at", "id") if s.upto_id in on_thread]


@dataclass(frozen=True)
class ConversationUsage:
    """What a conversation cost so far (every billed call: replies, summaries, titles)."""

    cost: Decimal
    reply_cost: Decimal
    summary_cost: Decimal
    title_cost: Decimal
    # Prompt tokens of the replies (input + cache writes + cache reads) and the cached share.
    prompt_tokens: int
    cache_read_tokens: int


def _money(value: Decimal | None) -> Decimal:
    # SQLite sums decimals as floats-with-many-digits; keep the ledger's precision everywhere.
    return (value or Decimal(0)).quantize(_MONEY_PLACES)


_MONEY_PLACES = Decimal("1E-8")


def conversation_usage_totals(*, conversation: Conversation) -> ConversationUsage:
    """Totals from the usage ledger in one aggregate query."""
    reply = Q(kind=UsageRecord.Kind.REPLY)
    row = UsageRecord.objects.filter(conversation=conversation).aggregate(
        total=Sum("cost"),
        replies=Sum("cost", filter=reply),
        summaries=Sum("cost", filter=Q(kind=UsageRecord.Kind.SUMMARY)),
        titles=Sum("cost", filter=Q(kind=UsageRecord.Kind.TITLE)),
        uncached_in=Sum("input_tokens", filter=reply),
        written_5m=Sum("cache_write_5m_tokens", filter=reply),
        written_1h=Sum("cache_write_1h_tokens", filter=reply),
        read=Sum("cache_read_tokens", filter=reply),
    )
    read = row["read"] or 0
    return ConversationUsage(
        cost=_money(row["total"]),
        reply_cost=_money(row["replies"]),
        summary_cost=_money(row["summaries"]),
        title_cost=_money(row["titles"]),
        prompt_tokens=(row["uncached_in"] or 0) + (row["written_5m"] or 0) + (row["written_1h"] or 0) + read,
        cache_read_tokens=read,
    )


def message_streaming_in_conversation(*, conversation_id: int) -> Message | None:
    return Message.objects.filter(conversation_id=conversation_id, status=Message.Status.STREAMING).order_by("-created_at").first()


def system_prompts_active(*, user: AbstractBaseUser | None = None) -> QuerySet[SystemPrompt]:
    """The active presets `user` may start a conversation with: those restricted to no group,
    and those restricted to a group the person is in. Without a user, the unrestricted ones only."""
    restricted = SystemPrompt.groups.through.objects.filter(systemprompt=OuterRef("pk"))
    allowed = ~Exists(restricted)
    if user is not None and getattr(user, "is_authenticated", False):
        allowed |= Exists(restricted.filter(group__user=user))
    return SystemPrompt.objects.filter(allowed, is_active=True).order_by("-is_default", "name")


def system_prompt_default(*, user: AbstractBaseUser | None = None) -> SystemPrompt | None:
    active = system_prompts_active(user=user)
    return active.filter(is_default=True).first() or active.first()


def llm_models_enabled() -> QuerySet[LLMModel]:
    return LLMModel.objects.filter(enabled=True).order_by("-is_default", "sort_order", "display_name")
