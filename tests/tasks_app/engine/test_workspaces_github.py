"""Git workspaces from GitHub threads, end to end: signed comment → clone → the agent's
change → commit → push → draft pull request → the acknowledgement edited; then a follow-up
on another machine, pull request threads of the same repository and of a fork."""

from __future__ import annotations

import httpx
import pytest

from tasks_app.models import AgentSession, Task, TaskStatus
from tests.engine import celery_worker, wait_for_status
from tests.live import asgi_server, wait_until
from tests.tasks_app.engine.git_helpers import PUBLIC_URL, bash, commit_message, git_env
from tests.tasks_app.github.payloads import REPO, encode, headers, issue_comment

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
S = TaskStatus


def deliver(url: str, payload: dict) -> None:
    body = encode(payload)
    answer = httpx.post(f"{url}/webhooks/github/", content=body, headers=headers(body), timeout=10)
    assert answer.status_code == 202, answer.text


def edited_comment(hosted_github, number: int, task: Task) -> str:
    """The acknowledgement of `task` once edited with its outcome."""

    def find() -> str | None:
        for comment in hosted_github.comments(repo=REPO, number=number):
            if comment["history"] and f"/tasks/{task.pk}/" in comment["body"]:
                return comment["body"]
        return None

    return wait_until(find, 30, f"the acknowledgement of task {task.pk} to be edited")


def test_comment_to_draft_pull_request_then_a_follow_up_on_another_machine(
    fake_model, hosted_github, registered, workspace_root, second_root
):
    main_before = hosted_github.branch_sha(REPO, "main")
    # One script for the thread: the fake follows a conversation by its first prompt.
    fake_model.script(
        "please fix the widget",
        *bash("printf 'def widget():\\n    return 2\\n' > src/widget.py", "Fixed the widget."),
        *bash("mkdir -p tests && echo 'assert 1' > tests/t.py", "Added a test."),
    )
    env = git_env(fake_model, hosted_github, workspace_root)
    with asgi_server(env) as (url, _):
        with celery_worker(env, concurrency=2):
            deliver(url, issue_comment("@claude please fix the widget"))
            first = wait_until(lambda: Task.objects.first(), 30, "the task")
            first = wait_for_status(first.pk, S.terminal(), timeout_s=90)
            assert first.status == S.SUCCEEDED, first.error
            comment = edited_comment(hosted_github, 7, first)
        # Another machine: its own, empty workspace root.
        with celery_worker(git_env(fake_model, hosted_github, second_root), concurrency=2):
            deliver(url, issue_comment("@claude add a test too"))
            second = wait_until(lambda: Task.objects.exclude(pk=first.pk).first(), 30, "task 2")
            second = wait_for_status(second.pk, S.terminal(), timeout_s=90)
            assert second.status == S.SUCCEEDED, second.error
            second_comment = edited_comment(hosted_github, 7, second)

    session = AgentSession.objects.get(pk=first.session_id)
    branch = session.branch
    assert branch.startswith(f"agentsite/{session.pk}-") and first.branch == branch
    assert (
        first.base_commit == main_before and hosted_github.branch_sha(REPO, "main") == main_before
    )
    assert (first.files_changed, first.insertions, first.deletions) == (1, 1, 1)
    assert [f["path"] for f in first.changed_files] == ["src/widget.py"]
    (pull,) = hosted_github.pulls(REPO)
    assert pull["draft"] is True and pull["head"]["ref"] == branch and pull["base"]["ref"] == "main"
    assert "Refs #7" in pull["body"] and f"{PUBLIC_URL}/tasks/{first.pk}/" in pull["body"]
    assert first.pull_request_url == pull["html_url"] == session.pull_request_url
    assert "1 file changed (+1 −1)" in comment and pull["html_url"] in comment
    message = commit_message(hosted_github, REPO, first.head_commit)
    assert message.startswith("Agentsite <agentsite@localhost>\nFixed the widget.")
    assert f"Agentsite-Task: {PUBLIC_URL}/tasks/{first.pk}/" in message
    assert "Co-authored-by: alice <" in message and "@users.noreply.github.com>" in message
    # The follow-up started from what the first machine pushed, and landed on top of it.
    assert second.base_commit == first.head_commit
    assert hosted_github.branch_sha(REPO, branch) == second.head_commit
    assert hosted_github.log(REPO, branch)[:2] == ["Added a test.", "Fixed the widget."]
    assert hosted_github.read_file(REPO, branch, "tests/t.py") == "assert 1\n"
    assert len(hosted_github.pulls(REPO)) == 1  # the session's pull request, not a new one
    assert pull["html_url"] in second_comment


def test_a_comment_on_a_same_repository_pull_request_pushes_to_its_branch(
    fake_model, hosted_github, registered, workspace_root
):
    pull = hosted_github.add_pull_request(REPO, number=8, head_ref="feature/speed", base="main")
    head_before = hosted_github.branch_sha(REPO, "feature/speed")
    fake_model.script("make it faster", *bash("echo fast > speed.txt"))
    env = git_env(fake_model, hosted_github, workspace_root)
    with asgi_server(env) as (url, _), celery_worker(env, concurrency=2):
        deliver(url, issue_comment("@claude make it faster", number=8, pull_request=True))
        task = wait_until(lambda: Task.objects.first(), 30, "the task")
        task = wait_for_status(task.pk, S.terminal(), timeout_s=90)
        assert task.status == S.SUCCEEDED, task.error
        comment = edited_comment(hosted_github, 8, task)
    assert task.branch == "feature/speed" and task.base_commit == head_before
    assert hosted_github.branch_sha(REPO, "feature/speed") == task.head_commit
    assert hosted_github.read_file(REPO, "feature/speed", "speed.txt") == "fast\n"
    assert len(hosted_github.pulls(REPO)) == 1 and task.pull_request_url == pull["html_url"]
    assert pull["html_url"] in comment


def test_a_comment_on_a_fork_pull_request_changes_nothing_remote_and_says_why(
    fake_model, hosted_github, registered, workspace_root
):
    hosted_github.add_pull_request(
        REPO, number=9, head_ref="patch-1", base="main", head_repo="mallory/widgets"
    )
    fork_before = hosted_github.branch_sha("mallory/widgets", "patch-1")
    fake_model.script("tidy this up", *bash("echo tidy > tidy.txt"))
    env = git_env(fake_model, hosted_github, workspace_root)
    with asgi_server(env) as (url, _), celery_worker(env, concurrency=2):
        deliver(url, issue_comment("@claude tidy this up", number=9, pull_request=True))
        task = wait_until(lambda: Task.objects.first(), 30, "the task")
        task = wait_for_status(task.pk, S.terminal(), timeout_s=90)
        assert task.status == S.SUCCEEDED, task.error
        comment = edited_comment(hosted_github, 9, task)
    assert task.base_commit == fork_before and task.files_changed == 1
    assert hosted_github.branch_sha("mallory/widgets", "patch-1") == fork_before
    assert hosted_github.branch_sha(REPO, "patch-1") is None
    assert "fork mallory/widgets" in task.workspace_note and "fork mallory/widgets" in comment
    assert "tidy.txt" in task.diff.text
