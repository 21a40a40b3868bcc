"""Querysets compiled once per process and run again with another value.

Django spends more CPU compiling some hot queries than the database spends running
them. Such a query is compiled with a stand-in for the value that changes, and each run
puts the real value where the stand-in went.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import Model, QuerySet
from django.db.models.query import RawQuerySet


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

    def _raw(self, model: type[Model], value: Any) -> RawQuerySet[Any]:
        bound = list(self.params)
        bound[self.value_at] = value
        return model._default_manager.raw(self.sql, bound)
