"""What a task changed, on its page and on the sessions page: files, diff, branch, PR."""

from __future__ import annotations

import pytest
from django.test import Client

from tasks_app.models import GitHubRepository, TaskDiff, TaskStatus
from tests.factories import make_session, make_task
from tests.tasks_app.test_dashboard import EVIL

pytestmark = pytest.mark.django_db
DIFF = (
    "diff --git a/app.py b/app.py\n--- a/app.py\n+++ b/app.py\n@@ -1 +1 @@\n"
    f"-old = 1\n+new = '{EVIL}'\n"
)


@pytest.fixture
def browser(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def changed_task(user, diff: str = DIFF, **fields):
    task = make_task(
        user,
        status=TaskStatus.SUCCEEDED,
        files_changed=1,
        insertions=1,
        deletions=1,
        changed_files=[{"path": f"app-{EVIL}.py", "insertions": 1, "deletions": 1}],
        branch="agentsite/1-fix",
        head_commit="a" * 40,
        commits=[["a" * 40, f"Fix {EVIL}"]],
        **fields,
    )
    TaskDiff.objects.create(task=task, text=diff)
    return task


def test_task_page_lists_changed_files_and_an_escaped_open_diff(browser, user):
    task = changed_task(user, pull_request_url="https://github.com/acme/widgets/pull/3")
    page = browser.get(f"/tasks/{task.pk}/").content.decode()
    assert (
        'data-testid="changes-panel"' in page
        and 'changes-panel" aria-labelledby="changes-heading" hidden' not in page
    )
    assert EVIL not in page  # every piece of it escaped
    assert '<span class="d-add">+new = &#x27;&lt;script&gt;' in page
    assert '<span class="d-del">-old = 1</span>' in page
    assert '<details class="diff" data-testid="diff" open>' in page
    assert 'href="https://github.com/acme/widgets/pull/3"' in page
    assert "agentsite/1-fix" in page


def test_a_big_diff_starts_collapsed(browser, user):
    big = "diff --git a/x b/x\n" + "".join(f"+line {i}\n" for i in range(1000))
    task = changed_task(user, diff=big)
    page = browser.get(f"/tasks/{task.pk}/").content.decode()
    assert '<details class="diff" data-testid="diff">' in page
    assert "Diff (1001 lines)" in page


def test_a_task_without_changes_hides_the_panel(browser, user):
    task = make_task(user, status=TaskStatus.SUCCEEDED)
    page = browser.get(f"/tasks/{task.pk}/").content.decode()
    assert 'aria-labelledby="changes-heading" hidden' in page


def test_sessions_page_shows_repository_branch_pull_request_and_commits(browser, user):
    session = make_session(user)
    session.github_repository = GitHubRepository.objects.create(
        full_name="acme/widgets", owner=user
    )
    session.branch = "agentsite/1-fix"
    session.pull_request_url = "https://github.com/acme/widgets/pull/3"
    session.save()
    changed_task(user, session=session)
    page = browser.get("/sessions/").content.decode()
    assert "acme/widgets" in page and "agentsite/1-fix" in page
    assert 'href="https://github.com/acme/widgets/pull/3"' in page
    assert "<code>aaaaaaaaaa</code> Fix &lt;script&gt;" in page
    assert EVIL not in page


def test_new_task_form_offers_the_callers_repositories_only(browser, user, other_user):
    GitHubRepository.objects.create(full_name="acme/mine", owner=user)
    GitHubRepository.objects.create(full_name="acme/theirs", owner=other_user)
    GitHubRepository.objects.create(full_name="acme/off", owner=user, enabled=False)
    page = browser.get("/tasks/new/").content.decode()
    assert '<option value="acme/mine">' in page
    assert "acme/theirs" not in page and "acme/off" not in page


def test_new_task_with_an_unknown_repository_names_the_field(browser, user):
    response = browser.post("/tasks/new/", {"prompt": "hi", "repository": "acme/nope"})
    assert response.status_code == 400
    assert "Select a valid choice" in response.content.decode()
