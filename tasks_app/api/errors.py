"""The one place where errors become HTTP answers: `{"detail": msg}` plus field errors."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from tasks_app.services.errors import (
    NotFound,
    PromptTooLarge,
    QuotaExceeded,
    ServiceError,
    TaskConflict,
)

SERVICE_ERROR_STATUS: dict[type[ServiceError], int] = {
    PromptTooLarge: status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
    QuotaExceeded: status.HTTP_429_TOO_MANY_REQUESTS,
    TaskConflict: status.HTTP_409_CONFLICT,
    NotFound: status.HTTP_404_NOT_FOUND,
}


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, ServiceError):
        code = SERVICE_ERROR_STATUS.get(type(exc), status.HTTP_400_BAD_REQUEST)
        return Response({"detail": exc.message}, status=code)
    if isinstance(exc, RequestDataTooBig):
        return Response(
            {"detail": "The request body is too large."},
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    if isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages}
        return Response(detail, status=status.HTTP_400_BAD_REQUEST)
    return exception_handler(exc, context)
