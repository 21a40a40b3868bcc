"""Query-string filters for list endpoints and their validation."""

from typing import Any

import django_filters
from django import forms

from tasks_app.models import Source, Task, TaskStatus


class NoBlankFilterForm(forms.Form):
    """A filter given with an empty value is a mistake, not "no filter"."""

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        for name in self.fields:
            if name in self.data and self.data.get(name) == "":
                self.add_error(name, "May not be blank; leave the parameter out instead.")
        return cleaned


class TaskFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=TaskStatus.choices)
    source = django_filters.ChoiceFilter(choices=Source.choices)
    session = django_filters.NumberFilter(field_name="session_id", min_value=1, max_value=2**63 - 1)

    class Meta:
        model = Task
        fields = ["status", "source", "session"]
        form = NoBlankFilterForm
