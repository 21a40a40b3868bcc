"""Hot statements without the ORM's cost on every call.

Django spends more CPU compiling some hot queries than the database spends running
them. Such a query is compiled with a stand-in for the value that changes, and each run
puts the real value where the stand-in went. Plain inserts and updates by equality skip
the ORM's query building, and an update that must read its row back does both in one
statement.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from django.db import connection, connections
from django.db.models import Field, Model, QuerySet
from django.db.models.query import RawQuerySet
from django.db.models.sql import UpdateQuery

M = TypeVar("M", bound=Model)

# Stands for a primary key while a lookup by it is compiled (no row has it).
PK_STAND_IN = -424_242


@dataclass(frozen=True)
class CompiledQuery:
    sql: str
    params: tuple[Any, ...]
    value_at: int  # where in params the changing value goes

    @classmethod
    def compile(cls, query: QuerySet[Any], alias: str, *stand_ins: Any) -> CompiledQuery:
        """`query`'s SQL for database `alias`; exactly one of its parameters must equal
        one of `stand_ins` (a backend may adapt the value while compiling: pass the
        forms it can take)."""
        sql, params = query.query.get_compiler(alias).as_sql()
        found = [i for i, value in enumerate(params) if any(value == s for s in stand_ins)]
        if len(found) != 1:
            raise RuntimeError(f"the query should take the value once, not {len(found)} times")
        return cls(sql, tuple(params), found[0])

    def rows(self, model: type[Model], value: Any) -> list[Any]:
        """Every row, as `model` instances, with `value` in the stand-in's place."""
        return list(self._raw(model, value))

    def first(self, model: type[Model], value: Any) -> Any:
        """The first row, as a `model` instance, with `value` in the stand-in's place."""
        return next(iter(self._raw(model, value)), None)

    def row(self, value: Any) -> tuple[Any, ...] | None:
        """The first row as the database driver gives it (no field converters: numbers
        and text only), with `value` in the stand-in's place; None when there is none."""
        with connection.cursor() as cursor:
            cursor.execute(self.sql, self._bound(value))
            return cursor.fetchone()

    def scalar(self, value: Any) -> Any:
        """The first column of `row(value)`, or None when there is no row."""
        row = self.row(value)
        return None if row is None else row[0]

    def _bound(self, value: Any) -> list[Any]:
        bound = list(self.params)
        bound[self.value_at] = value
        return bound

    def _raw(self, model: type[Model], value: Any) -> RawQuerySet[Any]:
        return model._default_manager.raw(self.sql, self._bound(value))


@functools.lru_cache(maxsize=32)
def _by_pk_query(model: type[Model], alias: str, deferred: tuple[str, ...]) -> CompiledQuery:
    query = model._default_manager.defer(*deferred).filter(pk=PK_STAND_IN)[:1]
    return CompiledQuery.compile(query, alias, PK_STAND_IN)


def get_by_pk(model: type[M], pk: Any, *, defer: tuple[str, ...] = ()) -> M | None:
    """`model.objects.defer(*defer).filter(pk=pk).first()`, compiled once per process."""
    return _by_pk_query(model, connection.alias, defer).first(model, pk)


@functools.lru_cache(maxsize=32)
def _column_by_pk_query(model: type[Model], alias: str, name: str) -> CompiledQuery:
    query = model._default_manager.filter(pk=PK_STAND_IN).values_list(name)[:1]
    return CompiledQuery.compile(query, alias, PK_STAND_IN)


def column_by_pk(model: type[Model], pk: Any, name: str) -> Any:
    """`model.objects.values_list(name, flat=True).get(pk=pk)` for a number or text
    column, compiled once per process; raises the model's DoesNotExist as `get` does."""
    row = _column_by_pk_query(model, connection.alias, name).row(pk)
    if row is None:
        raise model.DoesNotExist(f"no {model.__name__} {pk}")
    return row[0]


@dataclass(frozen=True)
class _UpdateShape:
    table: str  # quoted, as are the columns
    match: tuple[tuple[Field, str], ...]
    update: tuple[tuple[Field, str], ...]


@functools.lru_cache(maxsize=64)
def _update_shape(
    model: type[Model], alias: str, matched: tuple[str, ...], updated: tuple[str, ...]
) -> _UpdateShape:
    meta, quote = model._meta, connections[alias].ops.quote_name
    match = tuple(meta.pk if name == "pk" else meta.get_field(name) for name in matched)
    update = tuple(meta.get_field(name) for name in updated)
    for field in update:
        if field.primary_key or not field.concrete:
            raise ValueError(f"{model.__name__}.{field.name} needs the ORM's update")
    return _UpdateShape(
        quote(meta.db_table),
        tuple((f, quote(f.column)) for f in match),
        tuple((f, quote(f.column)) for f in update),
    )


def _saved(field: Field, value: Any) -> tuple[str, Any]:
    """(placeholder, parameter) for writing `value` to `field`, as the ORM's update and
    insert make them: the field's own preparation, then its placeholder for the prepared
    value (binary data has one of its own on some backends)."""
    prepared = field.get_db_prep_save(value, connection)
    if hasattr(field, "get_placeholder"):
        return field.get_placeholder(prepared, None, connection), prepared
    return "%s", prepared


def update_matching(model: type[Model], match: Mapping[str, Any], values: Mapping[str, Any]) -> int:
    """`model.objects.filter(**match).update(**values)` for equalities (None matches
    NULL, as in the ORM) and plain values (no expressions), with the model's metadata
    looked up once per process; returns the number of rows updated. Each value goes
    through its field's own preparation and placeholder, as in the ORM's update."""
    shape = _update_shape(model, connection.alias, tuple(match), tuple(values))
    assignments, params = [], []
    for (field, column), value in zip(shape.update, values.values(), strict=True):
        placeholder, param = _saved(field, value)
        assignments.append(f"{column} = {placeholder}")
        params.append(param)
    conditions = []
    for (field, column), value in zip(shape.match, match.values(), strict=True):
        if value is None:
            conditions.append(f"{column} IS NULL")
        else:
            conditions.append(f"{column} = %s")
            params.append(field.get_db_prep_value(value, connection))
    # Quoted names from the model's meta; every value is a parameter.
    sql = f"UPDATE {shape.table} SET {', '.join(assignments)} WHERE {' AND '.join(conditions)}"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def insert_all(objs: Sequence[Model]) -> None:
    """`Model.objects.bulk_create(objs)` for new rows of one model with a database-made
    primary key, without the ORM's query building: each value goes through its field's
    `pre_save` (auto_now_add), preparation and placeholder, and each object gets its
    primary key back (RETURNING), in as few statements as the backend allows."""
    if not objs:
        return
    meta = objs[0]._meta
    fields = [f for f in meta.concrete_fields if not f.primary_key]
    quote = connection.ops.quote_name
    columns = ", ".join(quote(f.column) for f in fields)
    # Quoted names from the model's meta; every value is a parameter.
    head = f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES "  # noqa: S608
    returning = f" RETURNING {quote(meta.pk.column)}"
    size = max(connection.ops.bulk_batch_size(fields, objs), 1)
    for start in range(0, len(objs), size):
        batch = objs[start : start + size]
        rows, params = [], []
        for obj in batch:
            placeholders = []
            for field in fields:
                placeholder, param = _saved(field, field.pre_save(obj, True))
                placeholders.append(placeholder)
                params.append(param)
            rows.append(f"({', '.join(placeholders)})")
        with connection.cursor() as cursor:
            cursor.execute(head + ", ".join(rows) + returning, params)
            keys = cursor.fetchall()
        for obj, (key,) in zip(batch, keys, strict=True):
            obj.pk = key
            obj._state.adding, obj._state.db = False, connection.alias


def update_and_refresh(instance: Model, queryset: QuerySet[Any], values: Mapping[str, Any]) -> bool:
    """`queryset.update(**values)` and, when it updated `instance`'s row (the queryset
    must match no other), every concrete field of `instance` set from what the UPDATE
    left, in one statement (RETURNING) rather than an UPDATE and a SELECT after it.

    Relations cached on `instance` are kept unless their key changed. False when no row
    matched (`instance` is then untouched).
    """
    model = queryset.model
    query = queryset.query.chain(UpdateQuery)
    query.add_update_values(values)
    if query.related_updates:
        raise ValueError("only the queryset's own table can be updated and read back")
    compiler = query.get_compiler(queryset.db)
    compiler.pre_sql_setup()
    sql, params = compiler.as_sql()
    fields = model._meta.concrete_fields
    quote = compiler.connection.ops.quote_name
    sql += " RETURNING " + ", ".join(quote(f.column) for f in fields)
    with compiler.connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    if not rows:
        return False
    if len(rows) > 1:
        raise RuntimeError(f"the update matched {len(rows)} rows, not one")
    columns = [f.get_col(model._meta.db_table) for f in fields]
    (row,) = compiler.apply_converters(rows, compiler.get_converters(columns))
    for field, value in zip(fields, row, strict=True):
        if (
            field.is_relation
            and field.is_cached(instance)
            and getattr(instance, field.attname) != value
        ):
            field.delete_cached_value(instance)
        setattr(instance, field.attname, value)
    return True
