"""Signals other parts of Agentsite listen to (the GitHub integration, metrics)."""

from django.dispatch import Signal

# Sent after commit when a task reaches a terminal status; kwargs: task.
task_finished = Signal()
