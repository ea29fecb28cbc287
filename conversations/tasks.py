"""Celery tasks: thin adapters over services."""

import logging

from asgiref.sync import async_to_sync
from celery import shared_task
from channels.layers import get_channel_layer

from . import groups, recovery

log = logging.getLogger(__name__)


@shared_task(acks_late=True, ignore_result=True)
def reap_stale_generations() -> int:
    """Mark replies whose runner's heartbeat went stale as interrupted, and tell their sockets."""
    ended = recovery.reap_stale()
    layer = get_channel_layer()
    for end in ended:
        async_to_sync(layer.group_send)(groups.user_group(end.pop("owner_id")), {"type": "chat.generation_end", "end": end})
    if ended:
        log.info("Marked %d orphaned replies as interrupted", len(ended))
    return len(ended)
