"""The web dashboard: task list, new task, the live task page, sessions.

Views parse the form, call one service or selector and render; live updates come over
the WebSockets (consumers.py), driven by the page scripts in static/tasks_app/.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from tasks_app import selectors
from tasks_app.api.errors import SERVICE_ERROR_STATUS
from tasks_app.forms import FollowUpForm, TaskCreateForm, TaskFilterForm
from tasks_app.models import Source, Task, TaskStatus
from tasks_app.services.errors import ServiceError
from tasks_app.services.tasks import task_cancel, task_create, task_retry

TASKS_PER_PAGE = 25
DIFF_SHOWN_LINES = 5000
DIFF_OPEN_LINES = 400
SESSIONS_PER_PAGE = 20
BAD_REQUEST = 400


def _own_task(request: HttpRequest, task_id: int) -> Task:
    task = selectors.task_get(owner=request.user, task_id=task_id)
    if task is None:
        raise Http404("No such task.")
    return task


def _status_of(error: ServiceError) -> int:
    return SERVICE_ERROR_STATUS.get(type(error), BAD_REQUEST)


@login_required
@require_GET
def task_list(request: HttpRequest) -> HttpResponse:
    filter_form = TaskFilterForm(request.GET)
    filters = filter_form.filters()
    tasks = selectors.task_list(owner=request.user, filters=filters)
    page = Paginator(tasks, TASKS_PER_PAGE).get_page(request.GET.get("page"))
    context = {
        "page": page,
        "filter_form": filter_form,
        "filter_query": urlencode(filters),
        "create_form": TaskCreateForm(owner=request.user),
    }
    return render(request, "tasks_app/task_list.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def task_new(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        form = TaskCreateForm(owner=request.user, initial={"session": request.GET.get("session")})
        return render(request, "tasks_app/task_new.html", {"form": form})
    form = TaskCreateForm(request.POST, owner=request.user)
    status = BAD_REQUEST
    if form.is_valid():
        try:
            task = task_create(owner=request.user, source=Source.WEB, **form.service_arguments())
        except ServiceError as error:
            form.add_error(None, error.message)
            status = _status_of(error)
        except ValidationError as error:
            for field, problems in error.message_dict.items():
                form.add_error(field if field in form.fields else None, problems)
        else:
            return redirect("task-detail", task_id=task.pk)
    return render(request, "tasks_app/task_new.html", {"form": form}, status=status)


def diff_lines(text: str) -> list[tuple[str, str]]:
    """(css class, line) of a unified diff, at most DIFF_SHOWN_LINES of them."""
    shown = []
    for line in text.splitlines()[:DIFF_SHOWN_LINES]:
        if line.startswith(("+++", "---", "diff ", "index ")):
            kind = "d-file"
        elif line.startswith("@@"):
            kind = "d-hunk"
        elif line.startswith("+"):
            kind = "d-add"
        elif line.startswith("-"):
            kind = "d-del"
        else:
            kind = ""
        shown.append((kind, line))
    return shown


def _render_task(
    request: HttpRequest, task: Task, follow_up: FollowUpForm, status: int = 200
) -> HttpResponse:
    diff = selectors.task_diff(task=task) if task.files_changed else None
    lines = diff_lines(diff.text) if diff else []
    context: dict[str, Any] = {
        "task": task,
        "follow_up": follow_up,
        "retryable": task.status in TaskStatus.retryable(),
        "duration_s": None if task.duration_ms is None else task.duration_ms / 1000,
        "diff_lines": lines,
        "diff_cut": diff is not None and (diff.truncated or len(lines) == DIFF_SHOWN_LINES),
        # Small diffs open; big ones wait for a click.
        "diff_open": len(lines) <= DIFF_OPEN_LINES,
    }
    return render(request, "tasks_app/task_detail.html", context, status=status)


@login_required
@require_GET
def task_detail(request: HttpRequest, task_id: int) -> HttpResponse:
    return _render_task(request, _own_task(request, task_id), FollowUpForm())


@login_required
@require_POST
def task_cancel_view(request: HttpRequest, task_id: int) -> HttpResponse:
    task = _own_task(request, task_id)
    try:
        task = task_cancel(task=task)
    except ServiceError as error:
        messages.error(request, error.message)
    else:
        if task.status == TaskStatus.CANCELLED:
            messages.success(request, f"Task {task.pk} is cancelled.")
        else:
            messages.info(request, f"Task {task.pk} is being stopped.")
    return redirect("task-detail", task_id=task.pk)


@login_required
@require_POST
def task_retry_view(request: HttpRequest, task_id: int) -> HttpResponse:
    task = _own_task(request, task_id)
    try:
        retry = task_retry(task=task, source=Source.WEB)
    except ServiceError as error:
        messages.error(request, error.message)
        return redirect("task-detail", task_id=task.pk)
    messages.success(request, f"Task {retry.pk} retries task {task.pk}.")
    return redirect("task-detail", task_id=retry.pk)


@login_required
@require_POST
def task_follow_up(request: HttpRequest, task_id: int) -> HttpResponse:
    task = _own_task(request, task_id)
    form = FollowUpForm(request.POST)
    status = BAD_REQUEST
    if form.is_valid():
        try:
            follow_up = task_create(
                owner=request.user,
                prompt=form.cleaned_data["prompt"],
                source=Source.WEB,
                session=task.session,
            )
        except ServiceError as error:
            form.add_error(None, error.message)
            status = _status_of(error)
        else:
            return redirect("task-detail", task_id=follow_up.pk)
    return _render_task(request, task, form, status=status)


@login_required
@require_GET
def session_list(request: HttpRequest) -> HttpResponse:
    sessions = selectors.session_list_with_recent_tasks(owner=request.user)
    page = Paginator(sessions, SESSIONS_PER_PAGE).get_page(request.GET.get("page"))
    return render(request, "tasks_app/session_list.html", {"page": page})
