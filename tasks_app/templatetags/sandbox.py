"""The agent sandbox's state for staff pages (the admin index)."""

from django import template

from tasks_app.services import sandboxing
from tasks_app.services.sandboxing import SandboxStatus

register = template.Library()


@register.simple_tag
def sandbox_status() -> SandboxStatus:
    return sandboxing.service_status()
