"""Agentsite: the Django project (settings, URLs, ASGI app, Celery app)."""

from agentsite.celery import app as celery_app

__all__ = ["celery_app"]
