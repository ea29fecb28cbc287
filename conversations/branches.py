"""Edits and branch switches. Every version of a message is kept, as a sibling.

Messages form a tree through `parent`; the person sees one path of it, the parent chain ending
at `Conversation.current_leaf`, and Claude is always sent that same path. Editing a message
stores a new message next to it (same parent) and starts a reply to it; regenerating (in
`services.reply_regenerate`) stores a new reply next to the old one. Switching moves
`current_leaf` into another branch. Nothing here deletes or rewrites a message.
"""

from __future__ import annotations

from django.db import transaction

from . import budgets, selectors, services
from .errors import ChatError
from .models import Conversation, Message
from .selectors import Branch
from .services import GenerationSpec

SWITCH_BUSY_MESSAGE = "Claude is still answering in this conversation. Wait for the reply to finish or press Stop, then switch versions."


def _locked(conversation: Conversation) -> tuple[Conversation, list[Message]]:
    """The conversation row, locked (a deleted one is `not_found`), and all its messages."""
    conversation = services.conversation_lock(conversation)
    return conversation, list(Message.objects.filter(conversation=conversation))


def _path_to(by_id: dict[int, Message], message_id: int | None) -> list[Message]:
    """The messages from the root down to `message_id` (inclusive), oldest first."""
    path: list[Message] = []
    node = by_id.get(message_id) if message_id is not None else None
    while node is not None and node not in path:
        path.append(node)
        node = by_id.get(node.parent_id) if node.parent_id else None
    path.reverse()
    return path


@transaction.atomic
def message_edit(*, conversation: Conversation, message_id: int, content: object, runner: str = "") -> tuple[Message, Message, GenerationSpec]:
    """Store `content` as a new version of the person's message `message_id` and start a reply to it.

    The new message is a sibling of the edited one (same parent); the old one and everything
    below it stay stored, one flip away. Claude gets the path to the new message only.
    Refused like a send: `empty`, `too_long`, `over_budget`, `busy` while a reply streams.
    """
    content = services._validate_content(content)
    budgets.ensure_within_budget(conversation.owner_id)
    conversation, messages = _locked(conversation)
    if any(m.status == Message.Status.STREAMING for m in messages):
        raise ChatError("busy", services.BUSY_MESSAGE)
    by_id = {m.pk: m for m in messages}
    original = by_id.get(message_id)
    if original is None or original.role != Message.Role.USER:
        raise ChatError("not_found", "That message no longer exists.")
    history = _path_to(by_id, original.parent_id)
    edited = Message.objects.create(
        conversation=conversation, parent_id=original.parent_id, role=Message.Role.USER, content=content, status=Message.Status.COMPLETE
    )
    if original.parent_id is None and conversation.title_source == Conversation.TitleSource.FIRST_MESSAGE:
        # The placeholder title came from the first message, which now reads differently.
        conversation.title = services._title_from(content)
    versions = sorted((m for m in messages if m.parent_id == original.parent_id and m.role == Message.Role.USER), key=lambda m: (m.created_at, m.pk))
    ids = (*(m.pk for m in versions), edited.pk)
    edited.branch = Branch(ids=ids, index=len(ids) - 1)
    reply, spec = services._start_reply(conversation=conversation, parent=edited, thread=[*history, edited], runner=runner)
    reply.branch = Branch(ids=(reply.pk,), index=0)
    return edited, reply, spec


def _newest_leaf(messages: list[Message], root: Message) -> Message:
    """The most recently written message under `root` (or `root` itself): the end of the path
    the person was last on there. A child is always newer than its parent, so it is a leaf."""
    children: dict[int, list[Message]] = {}
    for m in messages:
        if m.parent_id is not None:
            children.setdefault(m.parent_id, []).append(m)
    newest, stack, seen = root, [root], {root.pk}
    while stack:
        node = stack.pop()
        if (node.created_at, node.pk) > (newest.created_at, newest.pk):
            newest = node
        for child in children.get(node.pk, ()):
            if child.pk not in seen:
                seen.add(child.pk)
                stack.append(child)
    return newest


@transaction.atomic
def branch_switch(*, conversation: Conversation, message_id: int) -> list[Message]:
    """Show the branch that contains `message_id`; return the new visible thread (with `.branch` set).

    The thread then ends at the newest message below it, so flipping back to a version brings
    back the conversation that was carried on from it. A message already on the visible thread
    changes nothing. Refused (`busy`) while a reply streams: it must never be hidden mid-answer.
    """
    conversation, messages = _locked(conversation)
    if any(m.status == Message.Status.STREAMING for m in messages):
        raise ChatError("busy", SWITCH_BUSY_MESSAGE)
    target = next((m for m in messages if m.pk == message_id), None)
    if target is None:
        raise ChatError("not_found", "That message no longer exists.")
    thread = selectors.conversation_thread(conversation=conversation, messages=messages)
    if target not in thread:
        leaf = _newest_leaf(messages, target)
        # Not `save()`: looking at another version is not activity, the sidebar order stays.
        Conversation.objects.filter(pk=conversation.pk).update(current_leaf=leaf)
        conversation.current_leaf = leaf
    return selectors.conversation_thread_with_branches(conversation=conversation, messages=messages)
