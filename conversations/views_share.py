"""Export, import and share links: thin views over conversations/exports.py and sharing.py."""

from __future__ import annotations

from datetime import datetime

from django.contrib import messages as flash
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.safestring import mark_safe
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from . import exports, htmlcache, selectors, sharing
from .errors import ChatError
from .models import Message
from .templatetags.sharing_tags import share_link_rows

_NOINDEX = "noindex, nofollow"


def _download(body: str, *, content_type: str, filename: str) -> HttpResponse:
    response = HttpResponse(body, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "private, no-store"
    return response


@login_required
@require_GET
def conversation_export_markdown(request: HttpRequest, conversation_id: int) -> HttpResponse:
    conversation = selectors.conversation_get_for_user(user=request.user, conversation_id=conversation_id)
    return _download(
        exports.conversation_export_markdown(conversation=conversation),
        content_type="text/markdown; charset=utf-8",
        filename=exports.export_filename(conversation, "md"),
    )


@login_required
@require_GET
def conversation_export_json(request: HttpRequest, conversation_id: int) -> HttpResponse:
    """The visible thread; `?branches=all` adds every other version of the messages."""
    conversation = selectors.conversation_get_for_user(user=request.user, conversation_id=conversation_id)
    return _download(
        exports.conversation_export_json(conversation=conversation, branches=request.GET.get("branches") == "all"),
        content_type="application/json; charset=utf-8",
        filename=exports.export_filename(conversation, "json"),
    )


@login_required
@require_GET
def message_source(request: HttpRequest, conversation_id: int, message_id: int) -> HttpResponse:
    """A message's markdown as text: what the Copy button under a reply puts on the clipboard."""
    conversation = selectors.conversation_get_for_user(user=request.user, conversation_id=conversation_id)
    content = exports.message_source(conversation=conversation, message_id=message_id)
    response = HttpResponse(content, content_type="text/plain; charset=utf-8")
    response["Cache-Control"] = "private, no-store"
    return response


@login_required
@require_POST
def conversation_import(request: HttpRequest) -> HttpResponse:
    # Refused before Django reads (and spools to disk) a body that is far too large.
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    refusal = exports.too_large(max(0, length - 64 * 1024))
    upload = None if refusal else request.FILES.get("file")
    refusal = refusal or (exports.too_large(upload.size) if upload is not None else None)
    if refusal or upload is None:
        flash.error(request, f"Could not import that file: {refusal}" if refusal else "Choose a Chatsite JSON export to import.")
        return redirect("chat")
    try:
        result = exports.conversation_import(owner=request.user, raw=upload.read())
    except ChatError as exc:
        flash.error(request, f"Could not import {upload.name}: {exc.message}")
        return redirect("chat")
    note = f" Its model ({result.replaced_model}) is not offered here, so it continues with {result.conversation.model}." if result.replaced_model else ""
    flash.success(request, f"Imported “{result.conversation.display_title}”: {result.message_count} messages.{note}")
    return redirect("conversation_detail", conversation_id=result.conversation.pk)


@login_required
@require_POST
def share_create(request: HttpRequest, conversation_id: int) -> HttpResponse:
    conversation = selectors.conversation_get_for_user(user=request.user, conversation_id=conversation_id)
    try:
        link = sharing.share_link_create(conversation=conversation)
    except ChatError as exc:
        flash.error(request, exc.message)
        return redirect("conversation_detail", conversation_id=conversation.pk)
    url = request.build_absolute_uri(reverse("shared_conversation", args=[link.token]))
    flash.success(request, f"Share link created: {url} — anyone with it sees the conversation as it is now.")
    return redirect(reverse("conversation_detail", args=[conversation.pk]) + "?share=open")


@login_required
@require_GET
def share_links(request: HttpRequest, conversation_id: int) -> HttpResponse:
    """The Share menu's list of active links (an HTML fragment; share.js loads it on opening)."""
    conversation = selectors.conversation_get_for_user(user=request.user, conversation_id=conversation_id)
    response = render(request, "conversations/_share_links.html", {
        "conversation": conversation,
        "share_links": share_link_rows(request, conversation),
    })
    response["Cache-Control"] = "private, no-store"
    return response


@login_required
@require_POST
def share_revoke(request: HttpRequest, conversation_id: int, link_id: int) -> HttpResponse:
    conversation = selectors.conversation_get_for_user(user=request.user, conversation_id=conversation_id)
    sharing.share_link_revoke(conversation=conversation, link_id=link_id)
    flash.success(request, "Share link revoked: it no longer opens.")
    return redirect(reverse("conversation_detail", args=[conversation.pk]) + "?share=open")


@never_cache
@require_GET
def shared_conversation(request: HttpRequest, token: str) -> HttpResponse:
    """The read-only snapshot behind a share link: no login, not indexed, sanitised like any reply."""
    link = sharing.share_link_get_public(token=token)
    snapshot = link.snapshot if isinstance(link.snapshot, dict) else {}
    items = [item for item in snapshot.get("messages") or [] if isinstance(item, dict)]
    replies = [str(item.get("content") or "") for item in items if item.get("role") == Message.Role.ASSISTANT]
    rendered = iter(htmlcache.render_markdown_many(replies))
    messages = []
    for item in items:
        assistant = item.get("role") == Message.Role.ASSISTANT
        messages.append({
            "role": Message.Role.ASSISTANT if assistant else Message.Role.USER,
            "content": str(item.get("content") or ""),
            "html": mark_safe(next(rendered)) if assistant else "",  # sanitised (rendering.py)
            "created_at": _parse_time(item.get("created_at")),
        })
    response = render(request, "conversations/shared.html", {
        "title": str(snapshot.get("title") or "Shared conversation"),
        "model": str(snapshot.get("model") or ""),
        "shared_at": link.created_at,
        "shared_messages": messages,
    })
    response["X-Robots-Tag"] = _NOINDEX
    # The token is in the URL: keep it out of Referer headers sent to linked sites.
    response["Referrer-Policy"] = "no-referrer"
    return response


def _parse_time(value: object) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None
