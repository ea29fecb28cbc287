"""Server→client websocket frames (see docs/protocol.md), built as JSON strings once.

A delta frame is built once per batch and the same string goes to every socket following the
generation, so the per-socket cost is one websocket write.
Offsets count Unicode code points of the reply text.
"""

from __future__ import annotations

import json
from typing import Any

from .cleantext import storable
from .models import Message
from .rendering import render_markdown

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def delta(generation_id: str, offset: int, text: str) -> str:
    # storable(): what the person sees stream is what is stored (a lone surrogate could not
    # even be sent: it has no UTF-8); same length, so offsets hold. Once per batch of deltas.
    return _dumps({"type": "delta", "generation_id": generation_id, "offset": offset, "text": storable(text)})


def dumps(payload: dict[str, Any]) -> str:
    return _dumps(payload)


def usage_dict(message: Message) -> dict[str, Any]:
    return {
        "input_tokens": message.input_tokens,
        "output_tokens": message.output_tokens,
        "cache_creation_input_tokens": message.cache_creation_input_tokens,
        "cache_read_input_tokens": message.cache_read_input_tokens,
        "cost": str(message.cost),  # USD as a decimal string: no float rounding
    }


def message_dict(message: Message, *, html: bool = True, rendered: str | None = None) -> dict[str, Any]:
    """A message as clients see it.

    The person's own messages and streaming replies carry raw text (shown with textContent);
    finished replies carry sanitised HTML (`rendered` when the caller has it already).
    """
    data: dict[str, Any] = {
        "id": message.pk,
        "role": message.role,
        "status": message.status,
        "model": message.model,
        "generation_id": str(message.generation_id) if message.generation_id else None,
        "parent_id": message.parent_id,
        "error": message.error,
        "error_code": message.error_code,
        "created_at": message.created_at.isoformat() if message.created_at else None,
        "context_note": message.context_note,
    }
    if message.role == Message.Role.USER or message.status == Message.Status.STREAMING:
        data["text"] = message.content
    else:
        data["html"] = (rendered if rendered is not None else render_markdown(message.content)) if html else None
        data["usage"] = usage_dict(message)
    branch = getattr(message, "branch", None)  # set by the branch selectors, when known
    if branch is not None:
        data["siblings"] = {"ids": list(branch.ids), "index": branch.index}
    return data


def end(*, message: Message, conversation_title: str, html: str | None = None) -> dict[str, Any]:
    """The one final frame of a generation: done, stopped, error or interrupted."""
    return end_frame(
        generation_id=str(message.generation_id),
        conversation_id=message.conversation_id,
        conversation_title=conversation_title,
        message=message_dict(message, rendered=html),
        content_length=len(message.content),
    )


def end_frame(*, generation_id: str, conversation_id: int, conversation_title: str, message: dict[str, Any], content_length: int) -> dict[str, Any]:
    return {
        "type": "generation.end",
        "generation_id": generation_id,
        "conversation_id": conversation_id,
        "conversation_title": conversation_title,
        "message": message,
        "content_length": content_length,
    }


def finished_reply(*, message_id: int, model: str, generation_id: str, parent_id: int | None, created_at: str,
                   status: str, html: str, usage: dict[str, Any], error_code: str, error: str, context_note: str = "") -> dict[str, Any]:
    """The final state of a reply, from what the runner holds (no database read); `html` is
    its text rendered (renderpool)."""
    return {
        "id": message_id,
        "role": Message.Role.ASSISTANT,
        "status": status,
        "model": model,
        "generation_id": generation_id,
        "parent_id": parent_id,
        "error": error,
        "error_code": error_code,
        "created_at": created_at,
        "context_note": context_note,
        "html": html,
        "usage": usage,
    }



def notice(generation_id: str, code: str, message: str, *, seconds: float | None = None) -> dict[str, Any]:
    """Something the person should know while a reply is not moving: Claude is busy and the
    server waits to try again (`retrying`, with `seconds`), Claude has sent nothing for a while
    (`stalled`), the reply is done but cannot be stored yet (`saving`). Shown until the next
    text or the end."""
    frame: dict[str, Any] = {"type": "notice", "generation_id": generation_id, "code": code, "message": message}
    if seconds is not None:
        frame["seconds"] = round(seconds, 1)
    return frame
