from django.urls import path, re_path, register_converter

from tasks_app.api import views


class DatabaseIdConverter:
    """Positive ids that fit a bigint; anything longer is a plain 404, not a DB error."""

    regex = "[1-9][0-9]{0,17}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int) -> str:
        return str(value)


register_converter(DatabaseIdConverter, "dbid")

urlpatterns = [
    path("tasks/", views.TaskListCreateApi.as_view(), name="api-tasks"),
    path("tasks/<dbid:task_id>/", views.TaskDetailApi.as_view(), name="api-task"),
    path("tasks/<dbid:task_id>/events/", views.TaskEventsApi.as_view(), name="api-task-events"),
    path("tasks/<dbid:task_id>/diff/", views.TaskDiffApi.as_view(), name="api-task-diff"),
    path("tasks/<dbid:task_id>/cancel/", views.TaskCancelApi.as_view(), name="api-task-cancel"),
    path("tasks/<dbid:task_id>/retry/", views.TaskRetryApi.as_view(), name="api-task-retry"),
    path("sessions/", views.SessionListCreateApi.as_view(), name="api-sessions"),
    path("sessions/<dbid:session_id>/", views.SessionDetailApi.as_view(), name="api-session"),
    # Unknown API paths answer in JSON like every other API error, even with DEBUG on.
    re_path(r"^.*$", views.api_not_found),
]
