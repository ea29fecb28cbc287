from __future__ import annotations

from django.conf import settings
from django.contrib import messages as flash
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_POST

from . import selectors, services
from .errors import ChatError
from .models import Message
from .rendering import render_markdown

PENDING_KEY = "pending_first_message"


def _sidebar(request: HttpRequest, current_id: int | None = None) -> dict:
    return {
        "conversations": selectors.conversation_list_for_user(user=request.user),
        "current_id": current_id,
        "presets": selectors.system_prompts_active(),
        "models": selectors.llm_models_enabled(),
    }


@login_required
def chat_home(request: HttpRequest) -> HttpResponse:
    """The new-chat screen: pick a preset and a model, type the first message."""
    return render(request, "conversations/new.html", _sidebar(request))


@login_required
@require_POST
def conversation_new(request: HttpRequest) -> HttpResponse:
    try:
        preset_id = int(request.POST.get("preset") or 0) or None
        conversation = services.conversation_create(owner=request.user, model=request.POST.get("model") or None, preset_id=preset_id)
    except (ChatError, ValueError) as exc:
        flash.error(request, exc.message if isinstance(exc, ChatError) else "Pick a system prompt from the list.")
        return redirect("chat")
    first = request.POST.get("message", "")
    if first.strip():
        # Sent over the websocket by the conversation page; kept in the composer until acknowledged.
        pending = request.session.get(PENDING_KEY, {})
        pending[str(conversation.pk)] = first
        request.session[PENDING_KEY] = pending
    return redirect("conversation_detail", conversation_id=conversation.pk)


@login_required
def conversation_detail(request: HttpRequest, conversation_id: int) -> HttpResponse:
    conversation = selectors.conversation_get_for_user(user=request.user, conversation_id=conversation_id)
    thread = selectors.conversation_thread(conversation=conversation)
    for message in thread:
        if message.role == Message.Role.ASSISTANT and message.status != Message.Status.STREAMING:
            message.html = mark_safe(render_markdown(message.content))
    streaming = next((m for m in thread if m.status == Message.Status.STREAMING), None)
    pending = request.session.get(PENDING_KEY, {})
    first_message = pending.pop(str(conversation.pk), "")
    if first_message:
        request.session[PENDING_KEY] = pending
    context = _sidebar(request, conversation.pk) | {
        "conversation": conversation,
        "thread": thread,
        "chat_state": {
            "conversationId": conversation.pk,
            "wsPath": f"/ws/conversations/{conversation.pk}/",
            "streaming": {"generationId": str(streaming.generation_id), "messageId": streaming.pk, "text": streaming.content} if streaming else None,
            "pendingMessage": first_message,
            "maxInputChars": settings.CHATSITE_MAX_INPUT_CHARS,
        },
    }
    return render(request, "conversations/detail.html", context)


@login_required
@require_POST
def conversation_delete(request: HttpRequest, conversation_id: int) -> HttpResponse:
    conversation = selectors.conversation_get_for_user(user=request.user, conversation_id=conversation_id)
    conversation.delete()
    flash.success(request, "Conversation deleted.")
    return redirect("chat")
