"""Reads for the conversation sidebar and the archive page: owner-scoped, keyset-paginated.

A page is one query whatever the number of conversations: the next page starts after the last
row's (updated_at, id), never at an OFFSET the database would have to walk to. Pinned
conversations come first (a second query, on the first page only); then the rest, newest
activity first, grouped Today / Previous 7 days / Older in the person's time zone.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.http import Http404
from django.utils import timezone

from .models import Conversation, Message

PAGE_SIZE = 50
# More than anyone pins; the cap keeps the first page bounded.
MAX_PINNED = 100

GROUP_LABELS = {"pinned": "Pinned", "today": "Today", "week": "Previous 7 days", "older": "Older"}

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True)
class SidebarItem:
    id: int
    title: str
    group: str
    pinned: bool
    archived: bool
    generating: bool
    updated_at: datetime

    def as_json(self) -> dict:
        return {
            "id": self.id, "title": self.title, "url": f"/chat/{self.id}/", "group": self.group,
            "pinned": self.pinned, "archived": self.archived, "generating": self.generating,
            "updated_at": self.updated_at.isoformat(),
        }


@dataclass(frozen=True)
class SidebarPage:
    items: list[SidebarItem]
    next_cursor: str | None

    def groups(self) -> list[tuple[str, str, list[SidebarItem]]]:
        """(key, label, items) in display order, empty groups left out."""
        out: list[tuple[str, str, list[SidebarItem]]] = []
        for item in self.items:
            if not out or out[-1][0] != item.group:
                out.append((item.group, GROUP_LABELS[item.group], []))
            out[-1][2].append(item)
        return out

    def as_json(self) -> dict:
        return {"items": [i.as_json() for i in self.items], "next_cursor": self.next_cursor, "labels": GROUP_LABELS}


# --- time zone -------------------------------------------------------------------------------

TZ_COOKIE = "chatsite_tz"


def person_time_zone(name: str | None) -> tzinfo:
    """The browser's IANA zone (sidebar.js keeps it in a cookie); the server's TIME_ZONE otherwise."""
    if name and len(name) <= 64:
        try:
            return zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            pass
    return zoneinfo.ZoneInfo(settings.TIME_ZONE)


def recency_group(updated_at: datetime, *, now: datetime, tz: tzinfo) -> str:
    """Today / Previous 7 days / Older, by calendar day where the person is."""
    today = now.astimezone(tz).date()
    day = updated_at.astimezone(tz).date()
    if day >= today:
        return "today"
    if day >= today - timedelta(days=7):
        return "week"
    return "older"


# --- cursors ---------------------------------------------------------------------------------


def encode_cursor(updated_at: datetime, pk: int) -> str:
    # Integer microseconds: exact, no time-zone or float rounding on the way back.
    return f"{(updated_at - _EPOCH) // _MICROSECOND}.{pk}"


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """Raises ValueError on anything that is not a cursor this module made."""
    micros, _, pk = cursor.partition(".")
    if len(cursor) > 40 or not micros.lstrip("-").isdigit() or not pk.isdigit():
        raise ValueError("bad cursor")
    return _EPOCH + int(micros) * _MICROSECOND, int(pk)


def _after(qs: QuerySet[Conversation], cursor: str | None) -> QuerySet[Conversation]:
    if not cursor:
        return qs
    updated_at, pk = decode_cursor(cursor)
    return qs.filter(Q(updated_at__lt=updated_at) | Q(updated_at=updated_at, pk__lt=pk))


# --- queries ---------------------------------------------------------------------------------


def _mine(user: AbstractBaseUser) -> QuerySet[Conversation]:
    streaming = Message.objects.filter(conversation=OuterRef("pk"), status=Message.Status.STREAMING)
    return (
        Conversation.objects.filter(owner=user, deleted_at__isnull=True)
        .annotate(is_generating=Exists(streaming))
        .only("pk", "title", "pinned_at", "archived_at", "updated_at")
        .order_by("-updated_at", "-id")
    )


def _item(c: Conversation, group: str) -> SidebarItem:
    return SidebarItem(
        id=c.pk, title=c.display_title, group=group, pinned=c.pinned_at is not None, archived=c.archived_at is not None,
        generating=c.is_generating, updated_at=c.updated_at,
    )


def sidebar_page(*, user: AbstractBaseUser, cursor: str | None = None, tz: tzinfo | None = None,
                 now: datetime | None = None, limit: int = PAGE_SIZE) -> SidebarPage:
    """One page of the main list (not archived, not deleted). The first page (no cursor) starts
    with the pinned conversations. Two queries on the first page, one after."""
    tz = tz or person_time_zone(None)
    now = now or timezone.now()
    items: list[SidebarItem] = []
    main = _mine(user).filter(archived_at__isnull=True)
    if not cursor:
        items.extend(_item(c, "pinned") for c in main.filter(pinned_at__isnull=False)[:MAX_PINNED])
    rows = list(_after(main.filter(pinned_at__isnull=True), cursor)[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    items.extend(_item(c, recency_group(c.updated_at, now=now, tz=tz)) for c in rows)
    next_cursor = encode_cursor(rows[-1].updated_at, rows[-1].pk) if more else None
    return SidebarPage(items=items, next_cursor=next_cursor)


def archived_page(*, user: AbstractBaseUser, cursor: str | None = None, limit: int = PAGE_SIZE) -> SidebarPage:
    """The person's archived conversations, newest activity first (one query)."""
    rows = list(_after(_mine(user).filter(archived_at__isnull=False), cursor)[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(rows[-1].updated_at, rows[-1].pk) if more else None
    return SidebarPage(items=[_item(c, "older") for c in rows], next_cursor=next_cursor)


def conversation_get_deleted_for_user(*, user: AbstractBaseUser, conversation_id: int) -> Conversation:
    """The person's own conversation deleted so recently that it can still be restored, or Http404."""
    cutoff = timezone.now() - timedelta(seconds=settings.CHATSITE_UNDO_DELETE_SECONDS)
    conversation = Conversation.objects.filter(
        pk=conversation_id, owner_id=getattr(user, "pk", None), deleted_at__gte=cutoff,
    ).first() if getattr(user, "is_authenticated", False) else None
    if conversation is None:
        raise Http404("No such conversation")
    return conversation
