"""A repository-less session's first workspace, copied from a template instead of made
by git each time.

The template is what `check_out_saved` makes of an empty directory (a repository on the
scratch branch at the session's first commit, the same on every machine), made once
per workspace root and machine by the worker's own git, as the worker (no sandbox's
user can change it). A new session's start then runs nothing: before, it cost a setpriv, a shell, a
find and five git commands (about 10 ms of the machine's CPU, a tenth of a near-instant
task's).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from dataclasses import dataclass, replace
from pathlib import Path

from django.conf import settings

from gitops import workspace as ws
from tasks_app.services.workspaces.gitsetup import host_git, sandbox_user

TEMPLATES_DIR = ".scratch-templates"
START_FILE = "start"  # beside the template's .git: its HEAD commit


@dataclass(frozen=True)
class Template:
    path: Path
    start: str


_making = threading.Lock()  # one build per process (a threads pool's slots start together)


def first_checkout(workspace: Path, branch: str) -> str:
    """The empty `workspace` made the session's repository on `branch` at its first
    commit, belonging to the sandbox's user; returns that commit. Raises GitError."""
    path = Path(settings.AGENT_WORKSPACE_ROOT) / TEMPLATES_DIR / branch
    try:
        template = _template(path, branch)
    except OSError as exc:
        raise ws.file_error(exc, "the first commit's template could not be made") from exc
    ws.copy_repository(template.path, workspace, sandbox_user())
    return template.start


def _template(path: Path, branch: str) -> Template:
    # Looked for each time (a stat and a read): made again if someone removed it.
    with _making:
        if not (path / START_FILE).exists():
            _make(path, branch)
    return Template(path, (path / START_FILE).read_text().strip())


def _make(path: Path, branch: str) -> None:
    """Build the template beside its place and rename it there: another process (a
    prefork sibling, another worker on this machine) sees it whole or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{branch}-", dir=path.parent))
    try:
        # Without git's sample hooks and description: half the files to copy each time.
        git = replace(host_git(), config={**host_git().config, "init.templateDir": ""})
        start = ws.check_out_saved(git, building, saved="", branch=branch)
        assert start is not None  # noqa: S101 - nothing saved: the first commit is made
        (building / START_FILE).write_text(start)
        try:
            os.rename(building, path)
        except OSError:
            if not (path / START_FILE).exists():
                raise  # not a sibling's template in the way: a real failure
    finally:
        shutil.rmtree(building, ignore_errors=True)
