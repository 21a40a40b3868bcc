"""The webhook's repository lookup (SQL compiled once per process)."""

import pytest

from tasks_app.models import GitHubRepository
from tasks_app.selectors import repository_by_name
from tests.factories import make_user


@pytest.fixture
def repositories(db):
    owner = make_user("maintainer")
    return [
        GitHubRepository.objects.create(full_name="Acme/my_repo", owner=owner),
        GitHubRepository.objects.create(full_name="acme/off", owner=owner, enabled=False),
    ]


def test_a_repository_is_found_by_its_name_in_any_case(repositories):
    found = repository_by_name("acme/MY_REPO")
    assert found == repositories[0] and found.full_name == "Acme/my_repo"
    # Every field is loaded, as .first() would have.
    assert found.owner.username == "maintainer" and found.enabled


def test_a_disabled_repository_is_found_too(repositories):
    assert repository_by_name("acme/off") == repositories[1]


@pytest.mark.parametrize("name", ["acme/myXrepo", "acme/my%", "acme/%", "_cme/my_repo", "acme"])
def test_the_name_is_compared_whole_with_no_wildcards(repositories, name):
    assert repository_by_name(name) is None


def test_the_second_lookup_uses_the_same_sql_with_another_name(repositories):
    assert repository_by_name("ACME/OFF") == repositories[1]
    assert repository_by_name("acme/my_repo") == repositories[0]
