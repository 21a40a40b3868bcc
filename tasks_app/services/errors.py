"""Errors raised by services; the API maps each to one HTTP status in api.errors."""


class ServiceError(Exception):
    """A request that the service refuses, with a message fit for the user."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class PromptTooLarge(ServiceError):
    pass


class QuotaExceeded(ServiceError):
    pass


class TaskConflict(ServiceError):
    """The task's current status does not allow the requested change."""


class NotFound(ServiceError):
    pass
