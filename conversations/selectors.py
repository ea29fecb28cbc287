"""Reads. Every conversation read goes through an owner-scoped selector."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Exists, OuterRef, QuerySet
from django.http import Http404

from .models import Conversation, LLMModel, Message, SystemPrompt


def conversation_list_for_user(*, user: AbstractBaseUser, limit: int = 200) -> QuerySet[Conversation]:
    streaming = Message.objects.filter(conversation=OuterRef("pk"), status=Message.Status.STREAMING)
    return Conversation.objects.filter(owner=user).annotate(is_generating=Exists(streaming)).order_by("-updated_at", "-id")[:limit]


def conversation_get_for_user(*, user: AbstractBaseUser, conversation_id: int) -> Conversation:
    """The person's own conversation, or Http404 — never someone else's, never a 403 that leaks existence."""
    if not getattr(user, "is_authenticated", False):
        raise Http404("No such conversation")
    try:
        return Conversation.objects.get(pk=conversation_id, owner=user)
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


def message_streaming_in_conversation(*, conversation_id: int) -> Message | None:
    return Message.objects.filter(conversation_id=conversation_id, status=Message.Status.STREAMING).order_by("-created_at").first()


def system_prompts_active() -> QuerySet[SystemPrompt]:
    return SystemPrompt.objects.filter(is_active=True).order_by("-is_default", "name")


def system_prompt_default() -> SystemPrompt | None:
    return system_prompts_active().filter(is_default=True).first() or system_prompts_active().first()


def llm_models_enabled() -> QuerySet[LLMModel]:
    return LLMModel.objects.filter(enabled=True).order_by("-is_default", "sort_order", "display_name")
