"""The conversation page's list of share links (only rendered when the Share menu asks)."""

from __future__ import annotations

from typing import Any

from django import template
from django.http import HttpRequest
from django.urls import reverse

from conversations import sharing
from conversations.models import Conversation

register = template.Library()


def share_link_rows(request: HttpRequest, conversation: Conversation) -> list[dict[str, Any]]:
    """The conversation's active links with their absolute URLs (the caller checked the owner)."""
    return [
        {"id": link.pk, "url": request.build_absolute_uri(reverse("shared_conversation", args=[link.token])), "created_at": link.created_at}
        for link in sharing.share_links_active(conversation=conversation)
    ]


@register.simple_tag(takes_context=True)
def share_links_for(context: template.Context, conversation: Conversation) -> list[dict[str, Any]]:
    return share_link_rows(context["request"], conversation)
