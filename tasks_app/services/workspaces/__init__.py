"""A session's workspace as a git repository: checked out before each attempt (outside
the agent's sandbox), its work committed and pushed, or saved, after a successful one."""

from tasks_app.services.workspaces.checkout import (
    Checkout,
    Located,
    locate_checkout,
)
from tasks_app.services.workspaces.gitsetup import WorkspaceError
from tasks_app.services.workspaces.publish import Published, publish_attempt
from tasks_app.services.workspaces.spares import replenishing

__all__ = [
    "Checkout",
    "Located",
    "Published",
    "WorkspaceError",
    "locate_checkout",
    "publish_attempt",
    "replenishing",
]
