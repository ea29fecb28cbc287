"""The workspace's HTTP adapters: sidebar pages, pin/archive/rename/delete with undo, archive
page and search.

Every write is a small CSRF-protected POST. Asked with `Accept: application/json` (sidebar.js)
it answers JSON; a plain form post (no JavaScript) is redirected back to where it came from.
Every conversation is looked up through an owner-scoped selector: anyone else gets a 404.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from django.conf import settings
from django.contrib import messages as flash
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from . import search, selectors, services, sidebar, workspace
from .errors import ChatError
from .models import Conversation, Message

UNDO_SESSION_KEY = "chatsite_undo_delete"


# --- helpers ---------------------------------------------------------------------------------


def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def _time_zone(request: HttpRequest):
    return sidebar.person_time_zone(request.COOKIES.get(sidebar.TZ_COOKIE))


def _back(request: HttpRequest, *, avoid: str | None = None) -> HttpResponse:
    """Where a no-JS form came from (its `next`, if it is ours), else the new-chat page."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    safe = url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure())
    if not safe or (avoid and target.split("?")[0].split("#")[0] == avoid):
        return redirect("chat")
    return redirect(target)


def _item(request: HttpRequest, conversation: Conversation) -> dict:
    """The conversation as the sidebar shows it, with its group in the person's time zone."""
    if conversation.pinned_at is not None:
        group = "pinned"
    else:
        group = sidebar.recency_group(conversation.updated_at, now=timezone.now(), tz=_time_zone(request))
    generating = Message.objects.filter(conversation=conversation, status=Message.Status.STREAMING).exists()
    return sidebar.SidebarItem(
        id=conversation.pk, title=conversation.display_title, group=group, pinned=conversation.pinned_at is not None,
        archived=conversation.archived_at is not None, generating=generating, updated_at=conversation.updated_at,
    ).as_json()


def _undo_state(request: HttpRequest) -> dict | None:
    """The delete this person can still undo (kept in the session so a page load shows it too)."""
    pending = request.session.get(UNDO_SESSION_KEY)
    if not pending:
        return None
    try:
        deleted_at = datetime.fromisoformat(pending["deleted_at"])
        remaining = settings.CHATSITE_UNDO_DELETE_SECONDS - (timezone.now() - deleted_at).total_seconds()
    except (KeyError, TypeError, ValueError):
        remaining = 0
    if remaining <= 0.5:
        request.session.pop(UNDO_SESSION_KEY, None)
        return None
    return {
        "id": pending["id"], "title": pending.get("title", ""), "remaining": round(remaining, 1),
        "url": reverse("conversation_undo_delete", args=[pending["id"]]),
    }


def sidebar_context(request: HttpRequest) -> dict:
    """What templates/conversations/_sidebar.html needs: the first page (or, without JavaScript,
    the page `?before=` asks for) and any pending undo."""
    try:
        page = sidebar.sidebar_page(user=request.user, cursor=request.GET.get("before") or None, tz=_time_zone(request))
    except ValueError:
        page = sidebar.sidebar_page(user=request.user, tz=_time_zone(request))
    return {
        "sidebar": page,
        "undo": _undo_state(request),
        "undo_seconds": settings.CHATSITE_UNDO_DELETE_SECONDS,
    }


def _owned(request: HttpRequest, conversation_id: int) -> Conversation:
    return selectors.conversation_get_for_user(user=request.user, conversation_id=conversation_id)


def _action(change: Callable[..., Conversation], done: str, **broadcast: object) -> Callable[[HttpRequest, int], HttpResponse]:
    @login_required
    @require_POST
    def view(request: HttpRequest, conversation_id: int) -> HttpResponse:
        conversation = change(conversation=_owned(request, conversation_id))
        workspace.tell_owner(conversation=conversation, **broadcast)
        if _wants_json(request):
            return JsonResponse({"ok": True, "item": _item(request, conversation)})
        flash.success(request, done)
        return _back(request)

    return view


conversation_pin = _action(workspace.conversation_pin, "Pinned.", pinned=True)
conversation_unpin = _action(workspace.conversation_unpin, "Unpinned.", pinned=False)
conversation_archive = _action(workspace.conversation_archive, "Archived. Find it under “Archived”.", archived=True)
conversation_unarchive = _action(workspace.conversation_unarchive, "Back in your conversations.", archived=False)


# --- rename, delete, undo --------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def conversation_rename(request: HttpRequest, conversation_id: int) -> HttpResponse:
    """Inline in the sidebar with JavaScript; this page's form without."""
    conversation = _owned(request, conversation_id)
    if request.method == "GET":
        return render(request, "conversations/rename.html", {"conversation": conversation, "next": request.GET.get("next", "")})
    try:
        services.conversation_rename(conversation=conversation, title=request.POST.get("title"))
    except ChatError as exc:
        if _wants_json(request):
            return JsonResponse({"ok": False, "code": exc.code, "message": exc.message}, status=400)
        flash.error(request, exc.message)
        return redirect(reverse("conversation_rename", args=[conversation.pk]))
    # Open tabs (this page's header, other tabs' sidebars) take the new title like a generated one.
    workspace.tell_owner(conversation=conversation, title=conversation.title)
    if _wants_json(request):
        return JsonResponse({"ok": True, "item": _item(request, conversation)})
    flash.success(request, "Renamed.")
    return _back(request)


@login_required
@require_POST
def conversation_delete(request: HttpRequest, conversation_id: int) -> HttpResponse:
    """Soft delete with undo (views.conversation_delete, the page's own Delete, comes here too)."""
    conversation = _owned(request, conversation_id)
    workspace.conversation_delete(conversation=conversation)
    workspace.tell_owner(conversation=conversation, deleted=True)
    request.session[UNDO_SESSION_KEY] = {"id": conversation.pk, "title": conversation.display_title, "deleted_at": conversation.deleted_at.isoformat()}
    undo_url = reverse("conversation_undo_delete", args=[conversation.pk])
    if _wants_json(request):
        return JsonResponse({"ok": True, "id": conversation.pk, "undo_url": undo_url, "undo_seconds": settings.CHATSITE_UNDO_DELETE_SECONDS})
    return _back(request, avoid=reverse("conversation_detail", args=[conversation.pk]))


@login_required
@require_POST
def conversation_undo_delete(request: HttpRequest, conversation_id: int) -> HttpResponse:
    try:
        conversation = workspace.conversation_undo_delete(user=request.user, conversation_id=conversation_id)
    except Http404:
        if _wants_json(request):
            return JsonResponse({"ok": False, "code": "not_found", "message": "Too late: that conversation is gone."}, status=404)
        raise
    pending = request.session.get(UNDO_SESSION_KEY)
    if pending and pending.get("id") == conversation.pk:
        request.session.pop(UNDO_SESSION_KEY, None)
    workspace.tell_owner(conversation=conversation, deleted=False)
    if _wants_json(request):
        return JsonResponse({"ok": True, "item": _item(request, conversation)})
    flash.success(request, "Restored.")
    return redirect("conversation_detail", conversation_id=conversation.pk)


# --- lists -----------------------------------------------------------------------------------


@login_required
@require_GET
def sidebar_json(request: HttpRequest) -> JsonResponse:
    """The next page of the sidebar (`cursor` from the previous one)."""
    try:
        page = sidebar.sidebar_page(user=request.user, cursor=request.GET.get("cursor") or None, tz=_time_zone(request))
    except ValueError:
        return JsonResponse({"ok": False, "code": "bad_cursor", "message": "That page does not exist."}, status=400)
    return JsonResponse(page.as_json())


@login_required
@require_GET
def archived(request: HttpRequest) -> HttpResponse:
    try:
        page = sidebar.archived_page(user=request.user, cursor=request.GET.get("cursor") or None)
    except ValueError:
        raise Http404("No such page") from None
    return render(request, "conversations/archived.html", sidebar_context(request) | {"archived": page})


@login_required
@require_GET
def search_page(request: HttpRequest) -> HttpResponse:
    query = " ".join(request.GET.get("q", "").split())[: search.MAX_QUERY_CHARS]
    results = search.search_for_user(user=request.user, query=query) if query else []
    return render(request, "conversations/search.html", sidebar_context(request) | {"query": query, "results": results})


@login_required
@require_GET
def search_json(request: HttpRequest) -> JsonResponse:
    query = " ".join(request.GET.get("q", "").split())[: search.MAX_QUERY_CHARS]
    results = search.search_for_user(user=request.user, query=query) if query else []
    return JsonResponse({"query": query, "results": [r.as_json() for r in results]})
