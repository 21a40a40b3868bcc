from csp.decorators import csp_exempt
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from tasks_app.views import health
from tasks_app.views.metrics import metrics
from tasks_app.webhooks.github import github_webhook

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics, name="metrics"),
    path("webhooks/github/", github_webhook, name="github-webhook"),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # Swagger UI starts itself with an inline script: the one page without our CSP.
    path(
        "api/docs/",
        csp_exempt()(SpectacularSwaggerView.as_view(url_name="api-schema")),
        name="api-docs",
    ),
    path("api/", include("tasks_app.api.urls")),
    path("", include("tasks_app.urls")),
]
