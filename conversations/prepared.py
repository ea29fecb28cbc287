"""Hot read queries, compiled once per database connection settings.

Compiling a queryset (Django's SQL compiler) costs more CPU than running it: for the locking
read of a send, about 0.7 ms of compilation against 0.1 ms in the driver, all of it under the
GIL the event loop needs for relaying. A `Prepared` query is an ordinary queryset built once
with sentinel values, compiled for the database in use, and then run through
`Model.objects.raw()` with the real values in the sentinels' places: the same SQL, the same
model instances (annotations become attributes), without the compiler.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import connections
from django.db.models import Model, QuerySet
from django.db.models.query import RawQuerySet


class Prepared:
    """`Prepared(build, pk=SENTINEL)(pk=5)` runs `build(pk=SENTINEL)`'s SQL with 5 for the sentinel.

    Sentinels must be values the query would never hold otherwise (large negative ints).
    """

    def __init__(self, build: Callable[..., QuerySet], **sentinels: Any) -> None:
        self.build = build
        self.sentinels = sentinels
        self._compiled: dict[tuple[str, str], tuple[type[Model], str, list[Any], dict[int, str]]] = {}

    def _compile(self, using: str) -> tuple[type[Model], str, list[Any], dict[int, str]]:
        connection = connections[using]
        key = (using, connection.vendor)
        compiled = self._compiled.get(key)
        if compiled is None:
            queryset = self.build(**self.sentinels)
            sql, params = queryset.query.get_compiler(using).as_sql()
            slots: dict[int, str] = {}
            for name, sentinel in self.sentinels.items():
                found = [i for i, param in enumerate(params) if type(param) is type(sentinel) and param == sentinel]
                if len(found) != 1:
                    raise ValueError(f"sentinel {name!r} appears {len(found)} times in {sql!r}")
                slots[found[0]] = name
            compiled = self._compiled[key] = (queryset.model, sql, list(params), slots)
        return compiled

    def __call__(self, using: str = "default", **values: Any) -> RawQuerySet:
        model, sql, params, slots = self._compile(using)
        params = list(params)
        for index, name in slots.items():
            params[index] = values[name]
        return model.objects.raw(sql, params, using=using)


def update_rows(model: type[Model], rows: dict[Any, dict[str, Any]], *, match: dict[str, dict[Any, Any]] | None = None,
                status_in: tuple[str, list[Any]] | None = None, same: dict[str, Any] | None = None,
                using: str = "default", chunk: int = 500) -> list[Any]:
    """Set per-row values on many rows in one statement: `UPDATE … SET f = CASE pk WHEN … END`.

    `rows` maps primary keys to {field name: value}; every row names the same fields (possibly
    none). `same` holds values set on every row. A row is updated only where its `match`
    fields (per row: {field: {pk: value}}) equal the given values and, with
    `status_in=(field, values)`, that field is one of them. Returns the primary keys updated.
    More than `chunk` rows take one statement per `chunk` (bounded parameter counts).

    What `QuerySet.bulk_update` does, without building a Case/When expression tree per row and
    field (for a hundred rows that tree costs far more CPU than the statement), and with the
    conditions and RETURNING that bulk_update lacks.
    """
    pks = list(rows)
    if len(pks) > chunk:
        done: list[Any] = []
        for start in range(0, len(pks), chunk):
            part = pks[start:start + chunk]
            done += update_rows(
                model, {pk: rows[pk] for pk in part},
                match={name: {pk: values[pk] for pk in part} for name, values in (match or {}).items()},
                status_in=status_in, same=same, using=using, chunk=chunk,
            )
        return done
    if not rows:
        return []
    connection = connections[using]
    quote = connection.ops.quote_name
    meta = model._meta
    pk_column = quote(meta.pk.column)

    def typed(field: Any) -> str:
        # PostgreSQL types a CASE of untyped parameters as text; SQLite must not cast (CAST AS
        # a datetime type would turn the value numeric there).
        return f"CAST(%s AS {field.cast_db_type(connection)})" if connection.vendor == "postgresql" else "%s"

    def case(name: str, values: dict[Any, Any], params: list[Any]) -> str:
        field = meta.get_field(name)
        value = typed(field)
        for pk in pks:
            params += [pk, field.get_db_prep_save(values[pk], connection)]
        return f"CASE {pk_column} {' '.join([f'WHEN %s THEN {value}'] * len(pks))} END"

    params: list[Any] = []
    names = list(next(iter(rows.values())))
    assignments = [f"{quote(meta.get_field(name).column)} = {case(name, {pk: rows[pk][name] for pk in pks}, params)}" for name in names]
    for name, value in (same or {}).items():
        field = meta.get_field(name)
        assignments.append(f"{quote(field.column)} = %s")
        params.append(field.get_db_prep_save(value, connection))
    if not assignments:
        raise ValueError("update_rows: nothing to set")
    where = [f"{pk_column} IN ({', '.join(['%s'] * len(pks))})"]
    params += pks
    for name, values in (match or {}).items():
        where.append(f"{quote(meta.get_field(name).column)} = {case(name, values, params)}")
    if status_in is not None:
        name, allowed = status_in
        where.append(f"{quote(meta.get_field(name).column)} IN ({', '.join(['%s'] * len(allowed))})")
        params += list(allowed)
    sql = f"UPDATE {quote(meta.db_table)} SET {', '.join(assignments)} WHERE {' AND '.join(where)} RETURNING {pk_column}"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [row[0] for row in cursor.fetchall()]
