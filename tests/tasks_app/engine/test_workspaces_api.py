"""Git workspaces through the API: scratch sessions that follow their owner to another
machine, many tasks on one repository at once, someone pushing meanwhile, the diff."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

import pytest

from tasks_app.models import AgentSession, Source, Task, TaskStatus
from tasks_app.services.tasks import task_create
from tests.conftest import token_client
from tests.engine import celery_worker, wait_for_status, wait_until_finished
from tests.factories import make_user
from tests.fakes.anthropic_api import Error, ToolUse
from tests.live import wait_until
from tests.tasks_app.engine.git_helpers import TOKEN, bash, git_env, git_in
from tests.tasks_app.github.payloads import REPO

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
S = TaskStatus


def run_task(owner, prompt: str, *, session=None, repository=None, timeout_s=90) -> Task:
    task = task_create(
        owner=owner, prompt=prompt, source=Source.API, session=session, repository=repository
    )
    return wait_for_status(task.pk, S.terminal(), timeout_s=timeout_s)


def test_a_scratch_session_follows_its_owner_to_another_machine(
    fake_model, hosted_github, owner, workspace_root, second_root
):
    fake_model.script(
        "[notes]",
        *bash("echo 'first thoughts' > notes.txt", "Wrote notes."),
        *bash("cat notes.txt && echo more >> notes.txt", "Read them."),
    )
    with celery_worker(git_env(fake_model, hosted_github, workspace_root)):
        first = run_task(owner, "[notes] write it down")
    assert first.status == S.SUCCEEDED, first.error
    assert first.files_changed == 1 and first.changed_files[0]["path"] == "notes.txt"
    session = AgentSession.objects.get(pk=first.session_id)
    assert session.workspace_bundle and session.head_commit == first.head_commit
    with celery_worker(git_env(fake_model, hosted_github, second_root)):
        second = run_task(owner, "and then?", session=session)
    assert second.status == S.SUCCEEDED, second.error
    # The second machine restored the first one's history from the bundle.
    assert (second_root / session.workspace / "notes.txt").read_text() == "first thoughts\nmore\n"
    assert second.base_commit == first.head_commit
    assert git_in(second_root / session.workspace, "log", "--format=%s").split("\n")[:3] == [
        "Read them.",
        "Wrote notes.",
        "Start of the session",
    ]


def test_a_follow_up_here_continues_in_place_but_never_after_a_failed_attempt(
    fake_model, hosted_github, owner, workspace_root
):
    build = "printf 'out/\\n' > .gitignore && mkdir out && echo cached > out/cache && echo v1 > app"
    fake_model.script(
        "[inplace]",
        *bash(build, "Built."),
        *bash("ls out", "Looked."),
        ToolUse("Bash", {"command": "echo junk > junk && echo v2 > app", "description": "x"}),
        Error(400, "invalid_request_error", "scripted failure"),
        *bash("ls", "Listed."),
    )
    with celery_worker(git_env(fake_model, hosted_github, workspace_root)):
        first = run_task(owner, "[inplace] build it")
        session = AgentSession.objects.get(pk=first.session_id)
        workspace = workspace_root / session.workspace
        second = run_task(owner, "look", session=session)
        # No checkout in between: the ignored build output is still there.
        assert (workspace / "out" / "cache").read_text() == "cached\n"
        third = run_task(owner, "break it", session=session)
        assert (workspace / "junk").exists()
        fourth = run_task(owner, "and now?", session=session)
    assert [t.status for t in (first, second, third, fourth)] == [
        S.SUCCEEDED, S.SUCCEEDED, S.FAILED, S.SUCCEEDED,
    ], [t.error for t in (first, second, third, fourth)]  # fmt: skip
    assert second.base_commit == first.head_commit
    # After the failed attempt: a clean checkout of the last saved commit.
    assert fourth.base_commit == second.head_commit == first.head_commit
    assert not (workspace / "junk").exists() and not (workspace / "out").exists()
    assert (workspace / "app").read_text() == "v1\n"


def test_eight_tasks_on_one_repository_at_once_each_get_their_own_branch(
    fake_model, hosted_github, owner, registered, workspace_root
):
    for i in range(8):
        fake_model.script(f"[par{i}]", *bash(f"echo {i} > file{i}.txt", f"Task {i}."))
    env = git_env(fake_model, hosted_github, workspace_root, AGENT_MAX_RUNNING_PER_USER="8")
    with celery_worker(env, concurrency=4):
        tasks = [
            task_create(owner=owner, prompt=f"[par{i}] go", source=Source.API, repository=REPO)
            for i in range(8)
        ]
        done = wait_until_finished([t.pk for t in tasks], timeout_s=240)
    assert [t.status for t in done] == [S.SUCCEEDED] * 8, [t.error for t in done]
    branches = {t.branch for t in done}
    assert len(branches) == 8
    for task in done:
        assert hosted_github.branch_sha(REPO, task.branch) == task.head_commit
        number = re.search(r"\[par(\d)\]", task.prompt).group(1)
        assert hosted_github.read_file(REPO, task.branch, f"file{number}.txt") == f"{number}\n"
    assert len(hosted_github.pulls(REPO)) == 8
    mirror = next((workspace_root / ".mirrors").glob("*.git"))
    git_in(mirror, "fsck", "--strict", "--no-dangling")


def mark(spare: Path, name: str) -> Path:
    """A file in the spare's .git (git ignores it there) to know the spare again by."""
    marker = spare / ".git" / "test-marker"
    marker.write_text(name)
    return marker.relative_to(spare)


def test_new_workspaces_take_the_machines_spare_checkout_and_it_is_made_again(
    fake_model, hosted_github, owner, registered, workspace_root
):
    fake_model.script("[spare1]", *bash("echo one > one.txt", "One."))
    junk = "echo junk > junk && echo two > README.md"
    fake_model.script(
        "[spare2]",
        ToolUse("Bash", {"command": junk, "description": "x"}),
        Error(400, "invalid_request_error", "scripted failure"),
        *bash("ls && echo two > two.txt", "Two."),
    )
    spare = workspace_root / ".spares" / REPO.replace("/", "--")
    main_tip = hosted_github.branch_sha(REPO, "main")
    with celery_worker(git_env(fake_model, hosted_github, workspace_root)):
        first = run_task(owner, "[spare1] go", repository=REPO)
        # Made while the first task ran (none existed yet): the default branch, untouched.
        assert git_in(spare, "rev-parse", "HEAD").strip() == main_tip
        assert git_in(spare, "status", "--porcelain") == ""
        marker = mark(spare, "made")
        failed = run_task(owner, "[spare2] go", repository=REPO)
        workspace = workspace_root / AgentSession.objects.get(pk=failed.session_id).workspace
        assert (workspace / marker).read_text() == "made"  # a new session: the spare
        assert (workspace / "junk").exists()
        mark(spare, "remade")
        retried = run_task(owner, "and again", session=failed.session)
        assert (workspace / marker).read_text() == "remade"  # a retry after a failure: too
    assert [t.status for t in (first, failed, retried)] == [S.SUCCEEDED, S.FAILED, S.SUCCEEDED]
    assert retried.base_commit == main_tip and not (workspace / "junk").exists()
    assert hosted_github.read_file(REPO, retried.branch, "two.txt") == "two\n"
    assert hosted_github.read_file(REPO, retried.branch, "README.md") != "two\n"
    assert git_in(workspace, "branch", "--format=%(refname:short)").split() == [retried.branch]
    # The worker's git named itself in the reflog, never this machine's user and host.
    reflog = (workspace / ".git" / "logs" / "HEAD").read_text()
    assert "Agentsite <agentsite@localhost>" in reflog
    assert f"@{socket.gethostname()}" not in reflog
    # What the taken workspaces held is gone; the next spare stands ready.
    assert not any((workspace_root / ".spares").glob("*.trash/*"))
    assert not (spare / marker).exists() and git_in(spare, "status", "--porcelain") == ""


def wait_for_main_requests(fake_model, marker: str, count: int) -> None:
    wait_until(lambda: len(fake_model.requests(marker)) >= count, 60, f"request {count}")


def test_someone_pushing_meanwhile_is_rebased_on_or_sidestepped(
    fake_model, hosted_github, owner, registered, workspace_root
):
    # The follow-ups' agents edit only once the test created `.go` in the workspace, after
    # someone else pushed to the branch: after the checkout, before the push.
    gate = "until [ -e .go ]; do sleep 0.05; done; rm .go; "
    fake_model.script(
        "[race]",
        *bash("echo base > shared.txt", "Base."),
        *bash(gate + "echo mine > mine.txt", "Edited."),
        *bash(gate + "echo agent > shared.txt", "Edited again."),
    )
    env = git_env(fake_model, hosted_github, workspace_root)
    with celery_worker(env):
        first = run_task(owner, "[race] start", repository=REPO)
        assert first.status == S.SUCCEEDED, first.error
        session = AgentSession.objects.get(pk=first.session_id)
        workspace, branch = workspace_root / session.workspace, session.branch
        # 1. Someone else commits another file: the agent's commit is rebased on theirs.
        task = task_create(owner=owner, prompt="go on", source=Source.API, session=session)
        wait_for_main_requests(fake_model, "[race]", 3)
        hosted_github.commit_files(REPO, branch, {"theirs.txt": "theirs\n"}, "Theirs.")
        (workspace / ".go").touch()
        rebased = wait_for_status(task.pk, S.terminal(), timeout_s=90)
        # 2. Someone else changes the same file: the agent's work goes to a branch of its own.
        task = task_create(owner=owner, prompt="and more", source=Source.API, session=session)
        wait_for_main_requests(fake_model, "[race]", 5)
        hosted_github.commit_files(REPO, branch, {"shared.txt": "someone\n"}, "Someone's edit.")
        (workspace / ".go").touch()
        sidestepped = wait_for_status(task.pk, S.terminal(), timeout_s=90)
    assert rebased.status == S.SUCCEEDED, rebased.error
    assert hosted_github.log(REPO, branch)[:4] == ["Someone's edit.", "Edited.", "Theirs.", "Base."]
    assert "rebased on it" in rebased.workspace_note
    assert sidestepped.status == S.SUCCEEDED, sidestepped.error
    fallback = f"{branch}-{sidestepped.pk}"
    assert sidestepped.branch == fallback
    assert hosted_github.read_file(REPO, fallback, "shared.txt") == "agent\n"
    assert hosted_github.read_file(REPO, branch, "shared.txt") == "someone\n"
    assert f"pushed to {fallback} instead" in sidestepped.workspace_note


def test_the_token_appears_nowhere_but_in_requests_to_github(
    fake_model, hosted_github, owner, registered, workspace_root
):
    fake_model.script("[leak]", *bash("env; cat .git/config; git config -l", "Looked."))
    with celery_worker(git_env(fake_model, hosted_github, workspace_root)) as live:
        task = run_task(owner, "[leak] look around", repository=REPO)
    assert task.status == S.SUCCEEDED, task.error
    stored = [str(e.payload) for e in task.events.all()]
    assert not any(TOKEN in text for text in stored)
    for directory, _, files in os.walk(workspace_root):
        for name in files:
            path = Path(directory, name)
            if not path.is_symlink():
                assert TOKEN.encode() not in path.read_bytes(), path
    assert TOKEN not in live.log()
    assert TOKEN not in str([r.messages for r in fake_model.requests()])  # nor the sandbox
    # It did reach GitHub: as the worker's git credential and API token.
    git_requests = [r for r in hosted_github.requests() if ".git/" in r.path]
    assert git_requests and all("authorization" in r.headers for r in git_requests)


def test_the_diff_api_answers_text_and_says_where_it_was_cut(
    fake_model, hosted_github, owner, workspace_root
):
    lines = "\\n".join(f"line {i}" for i in range(400))
    fake_model.script("[big]", *bash(f"printf '{lines}\\n' > big.txt", "Big."))
    env = git_env(fake_model, hosted_github, workspace_root, AGENT_DIFF_MAX_BYTES="2000")
    with celery_worker(env):
        task = run_task(owner, "[big] write a lot")
    assert task.status == S.SUCCEEDED, task.error
    assert (task.files_changed, task.insertions, task.deletions) == (1, 400, 0)
    client = token_client(owner)
    response = client.get(f"/api/tasks/{task.pk}/diff/")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/x-diff")
    text = response.content.decode()
    assert text.startswith("diff --git a/big.txt b/big.txt") and "+line 0\n" in text
    assert text.endswith("\n# agentsite: the diff is cut here (over AGENT_DIFF_MAX_BYTES)\n")
    assert len(text.encode()) < 2100
    other = token_client(make_user("stranger"))
    assert other.get(f"/api/tasks/{task.pk}/diff/").status_code == 404
    detail = client.get(f"/api/tasks/{task.pk}/").json()
    assert detail["changed_files"] == [{"path": "big.txt", "insertions": 400, "deletions": 0}]
    assert detail["head_commit"] == task.head_commit and detail["repository"] is None
