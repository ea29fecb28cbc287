"""Operations: what the streaming engine of the process serving this request is doing."""

from __future__ import annotations

import os
import resource

from django.conf import settings
from django.http import HttpRequest, HttpResponseNotFound, JsonResponse

from . import dbstats
from .hub import get_hub


async def streams_stats(request: HttpRequest) -> JsonResponse | HttpResponseNotFound:
    """Staff only. Async on purpose: the hub lives on the server's event loop."""
    user = await request.auser()
    if not (user.is_authenticated and user.is_staff):
        return HttpResponseNotFound()
    hub = get_hub()
    return JsonResponse(
        {
            "pid": os.getpid(),
            "hub_channel": hub.channel_name,
            "live_generations": len(hub.runs),
            "followers": sum(len(run.followers) for run in hub.runs.values()),
            "stats": hub.stats,
            "db_writes": dbstats.writes() if settings.CHATSITE_COUNT_DB_WRITES else None,
            "max_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        }
    )
