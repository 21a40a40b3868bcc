"""Small input and output serializers of the REST API."""

from __future__ import annotations

import functools
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.conf import settings
from django.core.validators import RegexValidator
from rest_framework import serializers

from tasks_app.models import AgentSession, Task, TaskEvent

MAX_DB_ID = 2**63 - 1
BUDGET_STEP = Decimal("0.0001")


class CleanTextField(serializers.CharField):
    """Text that PostgreSQL and UTF-8 can store: no NUL, no lone surrogates."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            raise serializers.ValidationError("Must be a string.")
        value = super().to_internal_value(data)
        if "\x00" in value:
            raise serializers.ValidationError("Must not contain NUL characters.")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise serializers.ValidationError("Must be valid Unicode text.") from exc
        return value


# ECMAScript's whitespace (what \s means to JSON Schema validators), spelled out so that
# the API and its published pattern agree on every character; Python's \s differs.
ECMA_WHITESPACE = r"\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
# Published in the schema as patterns: no NUL (PostgreSQL cannot store it), and for the
# prompt at least one character that is not whitespace.
NO_NUL = RegexValidator(r"^[^\u0000]*$", "Must not contain NUL characters.")
NOT_BLANK = RegexValidator(
    rf"^[^\u0000]*[^\u0000{ECMA_WHITESPACE}][^\u0000]*$",
    "This field may not be blank, nor contain NUL characters.",
)


class TaskCreateInput(serializers.Serializer):
    # Size is checked in bytes by the service (413), so no max_length here.
    prompt = CleanTextField(trim_whitespace=False, validators=[NOT_BLANK])
    session = serializers.IntegerField(required=False, min_value=1, max_value=MAX_DB_ID)
    priority = serializers.IntegerField(required=False, default=0, min_value=-10, max_value=10)
    max_turns = serializers.IntegerField(required=False, min_value=1, max_value=1000)
    # Any number is accepted and rounded to 1/100 cent, rather than refusing 0.123456.
    max_budget_usd = serializers.DecimalField(
        required=False,
        max_digits=None,
        decimal_places=None,
        min_value=Decimal("0.0001"),
        max_value=Decimal("10000"),
        coerce_to_string=False,
    )
    timeout_s = serializers.IntegerField(
        required=False, min_value=10, max_value=settings.AGENT_TASK_TIMEOUT_S
    )
    repository = serializers.RegexField(
        r"^[A-Za-z0-9-]{1,39}/[A-Za-z0-9._-]{1,100}$",
        required=False,
        help_text='A registered repository, "owner/name": the agent works on a checkout.',
    )
    base = serializers.CharField(
        required=False,
        max_length=255,
        validators=[NO_NUL],
        help_text="The branch to start from (default: the repository's default branch).",
    )

    def validate_max_budget_usd(self, value: Decimal) -> Decimal:
        return max(value.quantize(BUDGET_STEP, rounding=ROUND_HALF_UP), BUDGET_STEP)


class OptionalUrlOutput(serializers.URLField):
    """A URL, or null where none is stored (the model keeps "")."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(read_only=True, allow_null=True, **kwargs)

    def to_representation(self, value: str) -> str | None:
        return value or None


class ChangedFileOutput(serializers.Serializer):
    path = serializers.CharField()
    insertions = serializers.IntegerField(allow_null=True)  # null: a binary file
    deletions = serializers.IntegerField(allow_null=True)


class TaskOutput(serializers.ModelSerializer):
    repository = serializers.SerializerMethodField()
    changed_files = ChangedFileOutput(many=True, read_only=True)
    pull_request_url = OptionalUrlOutput()

    class Meta:
        model = Task
        fields = [
            "id",
            "session",
            "prompt",
            "source",
            "status",
            "priority",
            "attempts",
            "max_attempts",
            "timeout_s",
            "max_turns",
            "max_budget_usd",
            "created",
            "started_at",
            "finished_at",
            "heartbeat_at",
            "worker",
            "exit_code",
            "result_text",
            "error",
            "cost_usd",
            "input_tokens",
            "output_tokens",
            "num_turns",
            "duration_ms",
            "cancel_requested_at",
            "retry_of",
            "repository",
            "branch",
            "base_commit",
            "head_commit",
            "pull_request_url",
            "files_changed",
            "insertions",
            "deletions",
            "changed_files",
            "workspace_note",
        ]
        read_only_fields = fields

    def get_repository(self, task: Task) -> str | None:
        repository = task.session.github_repository
        return repository.full_name if repository else None


@functools.cache
def _task_output() -> TaskOutput:
    # Building a ModelSerializer's fields costs more than using them, and these depend on
    # no request, so one instance per process serves every single task shown.
    return TaskOutput()


def prepare_task_representation() -> None:
    """Build the shared serializer's fields now rather than on the first task shown: a
    prefork worker does it before forking, so its pool processes share them."""
    _task_output().fields  # noqa: B018 - a cached property, built by reading it


def task_representation(task: Task) -> dict[str, Any]:
    """TaskOutput(task).data as a plain dict (JSON and msgpack safe), from one shared
    serializer: the API's answers about one task and the status pushes."""
    return dict(_task_output().to_representation(task))


class TaskPageOutput(serializers.Serializer):
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = TaskOutput(many=True)


class EventsQueryInput(serializers.Serializer):
    after = serializers.IntegerField(required=False, default=0, min_value=0, max_value=2**31)
    limit = serializers.IntegerField(required=False, default=100, min_value=1, max_value=1000)


class EventOutput(serializers.ModelSerializer):
    payload = serializers.JSONField()

    class Meta:
        model = TaskEvent
        fields = ["seq", "attempt", "kind", "payload", "created"]
        read_only_fields = fields


class EventsPageOutput(serializers.Serializer):
    results = EventOutput(many=True)
    next_after = serializers.IntegerField()


class SessionCreateInput(serializers.Serializer):
    # Untrimmed, so max_length applies to what was sent (as the schema promises).
    # Omit it for no title. (drf-spectacular renders allow_blank plus a pattern as a
    # oneOf that "" matches twice, so the published schema would refuse "" anyway.)
    title = CleanTextField(
        required=False,
        max_length=200,
        default="",
        trim_whitespace=False,
        validators=[NO_NUL],
    )


class SessionOutput(serializers.ModelSerializer):
    resumable = serializers.SerializerMethodField()
    repository = serializers.SerializerMethodField()
    pull_request_url = OptionalUrlOutput()

    class Meta:
        model = AgentSession
        fields = [
            "id",
            "title",
            "source",
            "created",
            "updated",
            "resumable",
            "repository",
            "base_branch",
            "branch",
            "head_commit",
            "pull_request_url",
        ]
        read_only_fields = fields

    def get_repository(self, session: AgentSession) -> str | None:
        repository = session.github_repository
        return repository.full_name if repository else None

    def get_resumable(self, session: AgentSession) -> bool:
        """Whether a new task in this session continues an earlier conversation."""
        return bool(session.cli_session_id)


class SessionPageOutput(serializers.Serializer):
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = SessionOutput(many=True)


class ErrorOutput(serializers.Serializer):
    detail = serializers.CharField()
