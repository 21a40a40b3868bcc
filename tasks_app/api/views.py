"""REST API views: parse input, call one service or selector, render output."""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse, QueryDict
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.decorators import api_view, authentication_classes, permission_classes
from rest_framework.exceptions import NotFound as HttpNotFound
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from tasks_app import selectors
from tasks_app.api.pagination import NewestFirstCursorPagination
from tasks_app.api.serializers import (
    ErrorOutput,
    EventOutput,
    EventsPageOutput,
    EventsQueryInput,
    SessionCreateInput,
    SessionOutput,
    SessionPageOutput,
    TaskCreateInput,
    TaskOutput,
    TaskPageOutput,
    task_representation,
)
from tasks_app.models import AgentSession, Source, Task, TaskStatus
from tasks_app.services.sessions import session_create
from tasks_app.services.tasks import task_cancel, task_create, task_retry

ERRORS: dict[int, OpenApiResponse] = {
    401: OpenApiResponse(ErrorOutput, description="No or invalid credentials."),
    429: OpenApiResponse(ErrorOutput, description="Throttled or over a quota."),
}
NOT_FOUND = {404: OpenApiResponse(ErrorOutput, description="Not found, or not yours.")}
INVALID_CURSOR = {404: OpenApiResponse(ErrorOutput, description="Invalid cursor.")}
BAD_REQUEST = {400: OpenApiResponse(OpenApiTypes.OBJECT, description="Field errors.")}
PAGE_QUERY = frozenset({"cursor", "page_size"})
TASK_LIST_QUERY = PAGE_QUERY | {"status", "source", "session"}
EVENTS_QUERY = frozenset({"after", "limit"})
MAX_DB_ID = 2**63 - 1
DB_ID_SCHEMA = {"type": "integer", "minimum": 1, "maximum": MAX_DB_ID}
TASK_ID = OpenApiParameter("task_id", DB_ID_SCHEMA, OpenApiParameter.PATH)
SESSION_ID = OpenApiParameter("session_id", DB_ID_SCHEMA, OpenApiParameter.PATH)
PAGE_PARAMETERS = [
    OpenApiParameter(
        "cursor", str, description="Opaque cursor from `next`/`previous`; a bad one is 404."
    ),
    OpenApiParameter(
        "page_size", {"type": "integer", "minimum": 1, "maximum": 100}, description="Default 25."
    ),
]


def _own_task(request: Request, task_id: int) -> Task:
    task = selectors.task_get(owner=request.user, task_id=task_id)
    if task is None:
        raise HttpNotFound("Task not found.")
    return task


def _own_session(request: Request, session_id: int) -> AgentSession:
    session = selectors.session_get(owner=request.user, session_id=session_id)
    if session is None:
        raise HttpNotFound("Session not found.")
    return session


def _query(request: Request, allowed: frozenset[str]) -> QueryDict:
    """The query string, refusing unknown parameters (a typo would silently filter
    nothing) and repeated ones (Django would keep the last value silently)."""
    errors = {
        name: ["Unknown parameter."] if name not in allowed else ["Give this parameter only once."]
        for name, values in request.query_params.lists()
        if name not in allowed or len(values) > 1
    }
    if errors:
        raise ValidationError(errors)
    return request.query_params


def _source_of(request: Request) -> Source:
    """Tasks made through the browser session count as web, token calls as API."""
    return Source.API if request.auth is not None else Source.WEB


class TaskListCreateApi(APIView):
    @extend_schema(
        operation_id="tasks_list",
        parameters=[
            OpenApiParameter("status", str, enum=TaskStatus.values),
            OpenApiParameter("source", str, enum=Source.values),
            OpenApiParameter("session", DB_ID_SCHEMA),
            *PAGE_PARAMETERS,
        ],
        responses={200: TaskPageOutput, **BAD_REQUEST, **INVALID_CURSOR, **ERRORS},
    )
    def get(self, request: Request) -> Response:
        tasks = selectors.task_list(owner=request.user, filters=_query(request, TASK_LIST_QUERY))
        paginator = NewestFirstCursorPagination()
        page = paginator.paginate_queryset(tasks, request, view=self)
        return paginator.get_paginated_response(TaskOutput(page, many=True).data)

    @extend_schema(
        operation_id="tasks_create",
        request=TaskCreateInput,
        responses={
            201: TaskOutput,
            **BAD_REQUEST,
            404: OpenApiResponse(ErrorOutput, description="The session is not found or not yours."),
            413: OpenApiResponse(ErrorOutput, description="Prompt over the size limit."),
            **ERRORS,
        },
    )
    def post(self, request: Request) -> Response:
        data = TaskCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        fields: dict[str, Any] = dict(data.validated_data)
        if "session" in fields:
            fields["session"] = _own_session(request, fields["session"])
        task = task_create(owner=request.user, source=_source_of(request), **fields)
        return Response(task_representation(task), status=status.HTTP_201_CREATED)


class TaskDetailApi(APIView):
    @extend_schema(
        operation_id="tasks_retrieve",
        parameters=[TASK_ID],
        responses={200: TaskOutput, **NOT_FOUND, **ERRORS},
    )
    def get(self, request: Request, task_id: int) -> Response:
        return Response(task_representation(_own_task(request, task_id)))


class TaskEventsApi(APIView):
    @extend_schema(
        operation_id="tasks_events",
        parameters=[TASK_ID, EventsQueryInput],
        responses={200: EventsPageOutput, **BAD_REQUEST, **NOT_FOUND, **ERRORS},
    )
    def get(self, request: Request, task_id: int) -> Response:
        query = EventsQueryInput(data=_query(request, EVENTS_QUERY))
        query.is_valid(raise_exception=True)
        task = _own_task(request, task_id)
        after = query.validated_data["after"]
        events = selectors.task_events(
            task_id=task.pk, after=after, limit=query.validated_data["limit"]
        )
        return Response(
            {
                "results": EventOutput(events, many=True).data,
                "next_after": events[-1].seq if events else after,
            }
        )


DIFF_TRUNCATED = "\n# agentsite: the diff is cut here (over AGENT_DIFF_MAX_BYTES)\n"


class TaskDiffApi(APIView):
    @extend_schema(
        operation_id="tasks_diff",
        parameters=[TASK_ID],
        responses={
            (200, "text/x-diff"): OpenApiResponse(
                str, description="The unified diff of the task's changes (empty: none)."
            ),
            **NOT_FOUND,
            **ERRORS,
        },
    )
    def get(self, request: Request, task_id: int) -> HttpResponse:
        diff = selectors.task_diff(task=_own_task(request, task_id))
        text = diff.text if diff else ""
        if diff is not None and diff.truncated:
            text += DIFF_TRUNCATED
        return HttpResponse(text, content_type="text/x-diff; charset=utf-8")


class TaskCancelApi(APIView):
    @extend_schema(
        operation_id="tasks_cancel",
        parameters=[TASK_ID],
        request=None,
        responses={
            202: TaskOutput,
            409: OpenApiResponse(ErrorOutput, description="The task already finished."),
            **NOT_FOUND,
            **ERRORS,
        },
    )
    def post(self, request: Request, task_id: int) -> Response:
        task = task_cancel(task=_own_task(request, task_id))
        return Response(task_representation(task), status=status.HTTP_202_ACCEPTED)


class TaskRetryApi(APIView):
    @extend_schema(
        operation_id="tasks_retry",
        parameters=[TASK_ID],
        request=None,
        responses={
            201: TaskOutput,
            409: OpenApiResponse(ErrorOutput, description="The task cannot be retried."),
            413: OpenApiResponse(ErrorOutput, description="Prompt over the size limit."),
            **NOT_FOUND,
            **ERRORS,
        },
    )
    def post(self, request: Request, task_id: int) -> Response:
        retry = task_retry(task=_own_task(request, task_id), source=_source_of(request))
        return Response(task_representation(retry), status=status.HTTP_201_CREATED)


class SessionListCreateApi(APIView):
    @extend_schema(
        operation_id="sessions_list",
        parameters=PAGE_PARAMETERS,
        responses={200: SessionPageOutput, **BAD_REQUEST, **INVALID_CURSOR, **ERRORS},
    )
    def get(self, request: Request) -> Response:
        _query(request, PAGE_QUERY)
        paginator = NewestFirstCursorPagination()
        page = paginator.paginate_queryset(
            selectors.session_list(owner=request.user), request, view=self
        )
        return paginator.get_paginated_response(SessionOutput(page, many=True).data)

    @extend_schema(
        operation_id="sessions_create",
        request=SessionCreateInput,
        responses={201: SessionOutput, **BAD_REQUEST, **ERRORS},
    )
    def post(self, request: Request) -> Response:
        data = SessionCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        session = session_create(
            owner=request.user, title=data.validated_data["title"], source=_source_of(request)
        )
        return Response(SessionOutput(session).data, status=status.HTTP_201_CREATED)


class SessionDetailApi(APIView):
    @extend_schema(
        operation_id="sessions_retrieve",
        parameters=[SESSION_ID],
        responses={200: SessionOutput, **NOT_FOUND, **ERRORS},
    )
    def get(self, request: Request, session_id: int) -> Response:
        return Response(SessionOutput(_own_session(request, session_id)).data)


@extend_schema(exclude=True)
@api_view(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
@authentication_classes([])
@permission_classes([])
def api_not_found(request: Request) -> Response:
    return Response({"detail": "Not found."}, status=status.HTTP_404_NOT_FOUND)
