"""Reactions to tasks_app.signals, connected when the app is ready."""

from typing import Any

from django.dispatch import receiver

from tasks_app.models import Source, Task
from tasks_app.services import dispatch
from tasks_app.signals import task_finished


@receiver(task_finished)
def report_to_github(sender: type[Task], task: Task, **_: Any) -> None:
    if task.source == Source.GITHUB:
        dispatch.publish_outcome_report(task.pk)
