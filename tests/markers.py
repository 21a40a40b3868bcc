"""Marks shared by test modules."""

from __future__ import annotations

import pytest
from django.conf import settings

# What only PostgreSQL has: a server to cut off, planner statistics, row locks.
on_postgresql = pytest.mark.skipif(
    settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"),
    reason="needs PostgreSQL (the default `make test` runs on SQLite)",
)
