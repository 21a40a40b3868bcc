"""Dashboard forms: new task, follow-up, and the task list's filter."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms
from django.contrib.auth.models import AbstractBaseUser

from tasks_app import selectors
from tasks_app.models import AgentSession, TaskStatus

# The select shows the latest sessions; any of the user's sessions is still accepted.
SESSION_CHOICES = 50


def _not_blank(value: str) -> str:
    if not value.strip():
        raise forms.ValidationError("Write a prompt: it may not be blank.")
    return value


class PromptField(forms.CharField):
    """The prompt, kept exactly as typed; its size in bytes is the service's to judge."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("widget", forms.Textarea(attrs={"rows": 6}))
        super().__init__(strip=False, **kwargs)

    def clean(self, value: Any) -> str:
        return _not_blank(super().clean(value))


def session_label(session: AgentSession) -> str:
    title = session.title or "untitled"
    return f"#{session.pk} · {title[:60]}"


def _testid(name: str) -> dict[str, str]:
    return {"data-testid": name}


class TaskCreateForm(forms.Form):
    prompt = PromptField(widget=forms.Textarea(attrs={"rows": 6, **_testid("new-task-prompt")}))
    session = forms.ModelChoiceField(
        queryset=AgentSession.objects.none(),
        required=False,
        empty_label="New session",
        help_text="A task in an existing session continues its conversation.",
        widget=forms.Select(attrs=_testid("new-task-session")),
    )
    repository = forms.ChoiceField(
        required=False,
        help_text="The agent works on a checkout and pushes a branch; none: a scratch workspace.",
        widget=forms.Select(attrs=_testid("new-task-repository")),
    )
    base = forms.CharField(
        required=False,
        max_length=255,
        label="Base branch",
        help_text="Default: the repository's default branch.",
        widget=forms.TextInput(attrs=_testid("new-task-base")),
    )
    max_turns = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=1000,
        widget=forms.NumberInput(attrs=_testid("new-task-max-turns")),
    )
    max_budget_usd = forms.DecimalField(
        required=False,
        label="Budget (USD)",
        min_value=Decimal("0.0001"),
        max_value=Decimal("10000"),
        decimal_places=4,
        widget=forms.NumberInput(attrs={"step": "0.0001", **_testid("new-task-budget")}),
    )

    def __init__(self, *args: Any, owner: AbstractBaseUser, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["session"]
        field.queryset = selectors.session_list(owner=owner)
        recent = selectors.session_list(owner=owner)[:SESSION_CHOICES]
        field.widget.choices = [("", "New session"), *((s.pk, session_label(s)) for s in recent)]
        names = selectors.usable_repositories(user=owner).values_list("full_name", flat=True)
        self.fields["repository"].choices = [("", "No repository"), *((n, n) for n in names)]

    def service_arguments(self) -> dict[str, Any]:
        """Keyword arguments for services.tasks.task_create."""
        data = self.cleaned_data
        return {
            "prompt": data["prompt"],
            "session": data["session"],
            "repository": data["repository"] or None,
            "base": data["base"].strip() or None,
            "max_turns": data["max_turns"],
            "max_budget_usd": data["max_budget_usd"],
        }


class FollowUpForm(forms.Form):
    prompt = PromptField(
        label="Your next message",
        widget=forms.Textarea(attrs={"rows": 3, **_testid("follow-up-prompt")}),
        help_text="Continues this task's session as a new task.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("auto_id", "follow_%s")
        super().__init__(*args, **kwargs)


class TaskFilterForm(forms.Form):
    status = forms.ChoiceField(
        choices=[("", "All statuses"), *TaskStatus.choices],
        required=False,
        widget=forms.Select(attrs=_testid("filter-status")),
    )
    session = forms.IntegerField(
        required=False, min_value=1, max_value=selectors.MAX_DB_ID, widget=forms.HiddenInput
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # The list page also holds the new-task form: keep the two sets of ids apart.
        kwargs.setdefault("auto_id", "filter_%s")
        super().__init__(*args, **kwargs)

    def filters(self) -> dict[str, Any]:
        """The selector's filters: only those given; none when the form is invalid."""
        if not self.is_valid():
            return {}
        return {name: value for name, value in self.cleaned_data.items() if value}
