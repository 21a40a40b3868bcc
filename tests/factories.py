"""Small builders for test data; each returns a saved object."""

from __future__ import annotations

import itertools
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser

from tasks_app.models import AgentSession, Source, Task, TaskStatus
from tasks_app.services.sessions import session_create

_counter = itertools.count(1)
PASSWORD = "correct-horse-battery-staple"


def make_user(username: str | None = None, **fields: Any) -> AbstractUser:
    name = username or f"user{next(_counter)}"
    return get_user_model().objects.create_user(username=name, password=PASSWORD, **fields)


def make_session(owner: AbstractUser, title: str = "a session") -> AgentSession:
    return session_create(owner=owner, title=title, source=Source.API)


def make_task(
    owner: AbstractUser,
    *,
    status: TaskStatus = TaskStatus.QUEUED,
    session: AgentSession | None = None,
    prompt: str = "say hello",
    **fields: Any,
) -> Task:
    """A task written directly in the given status (bypassing services, for set-up)."""
    return Task.objects.create(
        owner=owner,
        session=session or make_session(owner),
        prompt=prompt,
        status=status,
        max_attempts=fields.pop("max_attempts", 3),
        timeout_s=fields.pop("timeout_s", 600),
        **fields,
    )
