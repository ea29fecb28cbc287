from __future__ import annotations

from django.conf import settings
from django.contrib import messages as flash
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET, require_POST

from . import formatting, htmlcache, selectors, services, views_workspace
from .errors import ChatError
from .models import Message, Summary

PENDING_KEY = "pending_first_message"


def _sidebar(request: HttpRequest, current_id: int | None = None) -> dict:
    return {
        **views_workspace.sidebar_context(request),  # pinned + first page, grouped; pending undo
        "current_id": current_id,
        "presets": selectors.system_prompts_active(user=request.user),
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
    thread = selectors.conversation_thread_with_branches(conversation=conversation)  # `< 2/3 >` per message
    markers: dict[int, list[Summary]] = {}
    summaries = selectors.conversation_summaries_on_thread(conversation=conversation, thread=thread)
    finished = [m for m in thread if m.role == Message.Role.ASSISTANT and m.status != Message.Status.STREAMING]
    # From the cache when it can: rendering is most of the time a long conversation takes. What
    # is not cached renders in a helper process, with a time limit per text (renderpool).
    htmls = htmlcache.render_markdown_many([s.text for s in summaries] + [m.content for m in finished])
    for summary, html in zip(summaries, htmls):
        summary.html = mark_safe(html)
        markers.setdefault(summary.upto_id, []).append(summary)
    for message, html in zip(finished, htmls[len(summaries):]):
        message.html = mark_safe(html)
        message.usage = formatting.reply_usage(message)
    for message in thread:
        message.summaries_after = markers.get(message.pk, [])
    streaming = next((m for m in thread if m.status == Message.Status.STREAMING), None)
    pending = request.session.get(PENDING_KEY, {})
    first_message = pending.pop(str(conversation.pk), "")
    if first_message:
        request.session[PENDING_KEY] = pending
    totals = selectors.conversation_usage_totals(conversation=conversation)
    context = _sidebar(request, conversation.pk) | {
        "conversation": conversation,
        "thread": thread,
        "totals": _totals_display(totals),
        "chat_state": {
            "conversationId": conversation.pk,
            "wsPath": f"/ws/conversations/{conversation.pk}/",
            "summariesUrl": reverse("conversation_summaries", args=[conversation.pk]),
            "streaming": {"generationId": str(streaming.generation_id), "messageId": streaming.pk, "text": streaming.content} if streaming else None,
            "pendingMessage": first_message,
            "maxInputChars": settings.CHATSITE_MAX_INPUT_CHARS,
            "totals": _totals_state(totals),
        },
    }
    return render(request, "conversations/detail.html", context)


@login_required
@require_GET
def conversation_summaries(request: HttpRequest, conversation_id: int) -> JsonResponse:
    """The summaries on the visible thread (sanitised HTML) and the conversation's totals:
    what the page fetches when a summary or a title is made while it is open."""
    conversation = selectors.conversation_get_for_user(user=request.user, conversation_id=conversation_id)
    thread = selectors.conversation_thread(conversation=conversation)
    summaries = selectors.conversation_summaries_on_thread(conversation=conversation, thread=thread)
    return JsonResponse({
        "conversation_id": conversation.pk,
        "summaries": [_summary_dict(s, html) for s, html in zip(summaries, htmlcache.render_markdown_many([s.text for s in summaries]))],
        "totals": _totals_state(selectors.conversation_usage_totals(conversation=conversation)),
    })


def _summary_dict(summary: Summary, html: str) -> dict:
    return {
        "id": summary.pk,
        "upto_id": summary.upto_id,
        "html": html,
        "covered_messages": summary.covered_messages,
        "model": summary.model,
        "created_at": summary.created_at.isoformat(),
    }


def _totals_state(totals: selectors.ConversationUsage) -> dict:
    """For chat.js, which adds the cost of replies that finish while the page is open.
    Amounts are decimal strings (no float rounding)."""
    return {
        "cost": str(totals.cost),
        "replyCost": str(totals.reply_cost),
        "summaryCost": str(totals.summary_cost),
        "titleCost": str(totals.title_cost),
        "promptTokens": totals.prompt_tokens,
        "cacheReadTokens": totals.cache_read_tokens,
    }


def _totals_display(totals: selectors.ConversationUsage) -> dict:
    return {
        "cost": formatting.usd(totals.cost),
        "cost_title": totals_cost_title(totals),
        "hit_rate": formatting.hit_rate(cache_read=totals.cache_read_tokens, prompt=totals.prompt_tokens),
        "hit_rate_title": hit_rate_title(totals),
    }


def totals_cost_title(totals: selectors.ConversationUsage) -> str:
    return (
        f"Everything this conversation cost, at the prices of the time: replies {formatting.usd(totals.reply_cost)}, "
        f"summaries {formatting.usd(totals.summary_cost)}, titles {formatting.usd(totals.title_cost)}"
    )


def hit_rate_title(totals: selectors.ConversationUsage) -> str:
    return (
        f"Share of the replies' prompt tokens read from the prompt cache: {formatting.tokens(totals.cache_read_tokens)} "
        f"of {formatting.tokens(totals.prompt_tokens)}"
    )


@login_required
@require_POST
def conversation_delete(request: HttpRequest, conversation_id: int) -> HttpResponse:
    """A soft delete, undoable for CHATSITE_UNDO_DELETE_SECONDS (see views_workspace)."""
    return views_workspace.conversation_delete(request, conversation_id)
