"""The Celery app a test worker runs (`celery -A tests.celery_worker_app worker`): Chatsite's
own app and tasks, with broker bookkeeping private to the test run.

kombu's Redis transport keeps a delivered-but-unacknowledged message in one hash per Redis
database ("unacked"), and every worker on that database sweeps it with *its own* visibility
timeout. Test runs share database 1 and their workers use a timeout of a few seconds, so a
run's worker gets its own keys (`<queue>.unacked…`, deleted by scripts/runtests.py at the end
of the run) and another run can never redeliver its messages. The sweep runs every second so
a killed worker's message comes back right after the visibility timeout (the default sweep is
every 100 s). Remote control is off: the tests do not use it and it would leave pidbox
bindings behind.
"""

from __future__ import annotations

import os

from chatsite.celery import app

_queue = os.environ["CHATSITE_CELERY_QUEUE"]

app.conf.broker_transport_options = {
    **(app.conf.broker_transport_options or {}),
    "unacked_key": f"{_queue}.unacked",
    "unacked_index_key": f"{_queue}.unacked_index",
    "unacked_mutex_key": f"{_queue}.unacked_mutex",
    "unacked_restore_interval": 1,
    "unacked_restore_throttle": 1,
}
app.conf.worker_enable_remote_control = False

__all__ = ["app"]
