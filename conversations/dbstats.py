"""Counts the SQL write statements this process executes (for benchmarks and the ops page).

Off unless CHATSITE_COUNT_DB_WRITES is set: a wrapper on every statement is cheap, not free.
"""

from __future__ import annotations

import threading

from django.db.backends.signals import connection_created

_lock = threading.Lock()
_writes = 0
_WRITE_VERBS = ("INSERT", "UPDATE", "DELETE")


def writes() -> int:
    return _writes


def _count(execute, sql, params, many, context):
    global _writes
    if sql.lstrip()[:6].upper() in _WRITE_VERBS:
        with _lock:
            _writes += 1
    return execute(sql, params, many, context)


def _install(sender, connection, **kwargs) -> None:
    if _count not in connection.execute_wrappers:
        connection.execute_wrappers.append(_count)


def enable() -> None:
    connection_created.connect(_install, dispatch_uid="chatsite-count-db-writes")
