"""Owner-scoped reads the API needs beyond `conversations.selectors` (plain sync functions; the
async endpoints call them through `asyncdb.request_db`)."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Exists, OuterRef
from django.http import Http404

from .. import selectors
from ..models import Conversation, Message


def conversation_page_for_user(*, user: AbstractBaseUser, limit: int, offset: int) -> tuple[list[Conversation], int]:
    """One page of the person's conversations, newest activity first, and how many there are."""
    streaming = Message.objects.filter(conversation=OuterRef("pk"), status=Message.Status.STREAMING)
    mine = Conversation.objects.filter(owner=user, deleted_at__isnull=True)  # deleted: gone at once (undo window)
    page = list(mine.annotate(is_generating=Exists(streaming)).order_by("-updated_at", "-id")[offset : offset + limit])
    return page, mine.count()


def conversation_detail_for_user(*, user: AbstractBaseUser, conversation_id: int) -> tuple[Conversation, list[Message]]:
    conversation = selectors.conversation_get_for_user(user=user, conversation_id=conversation_id)
    return conversation, selectors.conversation_thread(conversation=conversation)


def reply_get_for_user(*, user: AbstractBaseUser, conversation_id: int, message_id: int) -> Message:
    """An assistant message of the person's own conversation, or Http404."""
    conversation = selectors.conversation_get_for_user(user=user, conversation_id=conversation_id)
    message = Message.objects.filter(conversation=conversation, pk=message_id, role=Message.Role.ASSISTANT).first()
    if message is None:
        raise Http404("No such reply")
    message.conversation = conversation
    return message


def reply_by_id(*, message_id: int) -> Message | None:
    """The stored state of a reply already known to be the caller's (while following it)."""
    return Message.objects.filter(pk=message_id).first()


def streaming_reply_in(*, conversation_id: int) -> Message | None:
    return selectors.message_streaming_in_conversation(conversation_id=conversation_id)
