"""Operator views: tasks (cancel, retry), events, sessions, deliveries, repositories, tokens.

Tasks and events are read-only here: status changes go through the same services as
the API, so the admin cannot break the status machine.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from tasks_app.models import (
    AgentSession,
    ApiToken,
    DeadLetter,
    GitHubRepository,
    Task,
    TaskEvent,
    WebhookDelivery,
)
from tasks_app.services import dead_letters, webhooks
from tasks_app.services.errors import ServiceError
from tasks_app.services.tasks import task_cancel, task_retry
from tasks_app.services.tokens import api_token_create, api_token_revoke

RECENT_EVENTS_SHOWN = 20


class ReadOnlyAdmin(admin.ModelAdmin):
    # Pull request links are https; Django 6 assumes so for a scheme-less URL (5.x warns).
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _apply_to_each(
    modeladmin: admin.ModelAdmin, request: HttpRequest, tasks: QuerySet[Task], verb: str, fn: Any
) -> None:
    done = 0
    for task in tasks:
        try:
            fn(task=task)
            done += 1
        except ServiceError as exc:
            modeladmin.message_user(request, f"Task {task.pk}: {exc.message}", messages.WARNING)
    if done:
        modeladmin.message_user(request, f"{verb} {done} task(s).", messages.SUCCESS)


@admin.register(Task)
class TaskAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "owner",
        "status",
        "source",
        "priority",
        "attempts",
        "created",
        "cost_usd",
        "files_changed",
    ]
    list_filter = [
        "status",
        "source",
        "owner",
        ("created", admin.DateFieldListFilter),
        ("events_compacted_at", admin.EmptyFieldListFilter),
    ]
    search_fields = ["=id", "prompt"]
    date_hierarchy = "created"
    list_select_related = ["owner"]
    list_per_page = 50
    actions = ["cancel_tasks", "retry_tasks"]
    readonly_fields = ["recent_events"]

    @admin.action(description="Cancel selected tasks")
    def cancel_tasks(self, request: HttpRequest, queryset: QuerySet[Task]) -> None:
        _apply_to_each(self, request, queryset, "Cancelled", task_cancel)

    @admin.action(description="Retry selected tasks (as new tasks)")
    def retry_tasks(self, request: HttpRequest, queryset: QuerySet[Task]) -> None:
        _apply_to_each(self, request, queryset, "Retried", task_retry)

    @admin.display(description="Events")
    def recent_events(self, task: Task) -> str:
        events = task.events.order_by("-seq")[:RECENT_EVENTS_SHOWN]
        all_url = reverse("admin:tasks_app_taskevent_changelist") + f"?task__id__exact={task.pk}"
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            ((e.seq, e.kind, str(e.payload)[:200]) for e in reversed(events)),
        )
        dropped = (
            f" ({task.events_dropped} text deltas dropped by event retention)"
            if task.events_compacted_at
            else ""
        )
        return format_html(
            '<p><a href="{}">All {} events (paginated)</a>{}</p><table>{}</table>',
            all_url,
            task.last_seq - task.events_dropped,
            dropped,
            rows,
        )


@admin.register(TaskEvent)
class TaskEventAdmin(ReadOnlyAdmin):
    list_display = ["task", "seq", "attempt", "kind", "created"]
    list_filter = ["kind"]
    search_fields = ["=task__id"]
    list_per_page = 100
    show_full_result_count = False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(AgentSession)
class AgentSessionAdmin(ReadOnlyAdmin):
    list_display = ["id", "title", "owner", "source", "github_repository", "branch", "created"]
    list_filter = ["source"]
    search_fields = ["=id", "title", "branch"]
    list_select_related = ["owner", "github_repository"]
    exclude = ["transcript", "workspace_bundle"]


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = [
        "delivery_id", "event", "action", "repository", "sender", "outcome", "reason", "task",
        "duplicates", "received",
    ]  # fmt: skip
    list_filter = ["outcome", "event", "repository", ("received", admin.DateFieldListFilter)]
    search_fields = ["=delivery_id", "sender", "repository"]
    date_hierarchy = "received"
    actions = ["replay"]

    @admin.action(description="Replay selected deliveries (as new deliveries)")
    def replay(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        for delivery in queryset:
            try:
                replayed = webhooks.replay_delivery(delivery)
            except ValueError as exc:
                self.message_user(request, f"{delivery.delivery_id}: {exc}", messages.WARNING)
                continue
            self.message_user(
                request,
                f"Replayed {delivery.delivery_id} as {replayed.delivery_id}: "
                f"{replayed.outcome} {replayed.reason}".strip(),
                messages.SUCCESS,
            )


@admin.register(GitHubRepository)
class GitHubRepositoryAdmin(admin.ModelAdmin):
    list_display = ["full_name", "owner", "enabled", "trigger", "created"]
    list_filter = ["enabled"]
    search_fields = ["full_name"]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["prefix", "user", "name", "created", "last_used_at", "revoked_at"]
    list_filter = ["revoked_at"]
    search_fields = ["prefix", "user__username", "name"]
    actions = ["revoke_tokens"]

    def get_fields(self, request: HttpRequest, obj: ApiToken | None = None) -> list[str]:
        return (
            ["user", "name"]
            if obj is None
            else ["user", "name", "prefix", "created", "last_used_at", "revoked_at"]
        )

    def get_readonly_fields(self, request: HttpRequest, obj: ApiToken | None = None) -> list[str]:
        return [] if obj is None else ["user", "prefix", "created", "last_used_at", "revoked_at"]

    def save_model(self, request: HttpRequest, obj: ApiToken, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        token, key = api_token_create(user=obj.user, name=obj.name)
        obj.pk = token.pk
        obj.refresh_from_db()
        self.message_user(
            request,
            format_html(
                "New token for {}: <code>{}</code> — copy it now, it is shown only once.",
                obj.user,
                key,
            ),
            messages.SUCCESS,
        )

    @admin.action(description="Revoke selected tokens")
    def revoke_tokens(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        for token in queryset:
            api_token_revoke(token=token)
        self.message_user(request, f"Revoked {queryset.count()} token(s).", messages.SUCCESS)


@admin.register(DeadLetter)
class DeadLetterAdmin(ReadOnlyAdmin):
    list_display = ["id", "job", "task", "delivery", "reason", "created", "requeued_at"]
    list_filter = ["job", ("created", admin.DateFieldListFilter), "requeued_at"]
    search_fields = ["=task__id", "reason", "key"]
    actions = ["requeue"]

    @admin.action(description="Requeue selected dead letters")
    def requeue(self, request: HttpRequest, queryset: QuerySet[DeadLetter]) -> None:
        done = 0
        for dead_letter in queryset.select_related("task"):
            try:
                dead_letters.requeue(dead_letter)
                done += 1
            except ServiceError as exc:
                self.message_user(request, f"{dead_letter}: {exc.message}", messages.WARNING)
        if done:
            self.message_user(request, f"Requeued {done} dead letter(s).", messages.SUCCESS)
