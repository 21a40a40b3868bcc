from django.contrib.auth import views as auth_views
from django.urls import path

from tasks_app.views import dashboard

urlpatterns = [
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", dashboard.task_list, name="dashboard"),
    path("tasks/new/", dashboard.task_new, name="task-new"),
    path("tasks/<int:task_id>/", dashboard.task_detail, name="task-detail"),
    path("tasks/<int:task_id>/cancel/", dashboard.task_cancel_view, name="task-cancel"),
    path("tasks/<int:task_id>/retry/", dashboard.task_retry_view, name="task-retry"),
    path("tasks/<int:task_id>/follow-up/", dashboard.task_follow_up, name="task-follow-up"),
    path("sessions/", dashboard.session_list, name="sessions"),
]
