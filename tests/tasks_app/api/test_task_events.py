import pytest

from tasks_app.services.events import NewEvent, append_events
from tests.factories import make_task


@pytest.fixture
def task_with_events(user):
    task = make_task(user)
    append_events(task, [NewEvent("text", {"text": f"line {i}"}) for i in range(1, 8)], attempt=1)
    return task


def test_events_after_and_limit_page_through_in_order(api, task_with_events):
    url = f"/api/tasks/{task_with_events.pk}/events/"
    page = api.get(url, {"after": 2, "limit": 3}).json()
    assert [e["seq"] for e in page["results"]] == [3, 4, 5]
    assert page["next_after"] == 5
    assert page["results"][0]["payload"] == {"text": "line 3"}
    rest = api.get(url, {"after": page["next_after"]}).json()
    assert [e["seq"] for e in rest["results"]] == [6, 7]
    empty = api.get(url, {"after": 7}).json()
    assert empty == {"results": [], "next_after": 7}


@pytest.mark.parametrize("query", [{"after": -1}, {"limit": 0}, {"limit": 5000}, {"after": "x"}])
def test_events_with_bad_query_is_400(api, task_with_events, query):
    response = api.get(f"/api/tasks/{task_with_events.pk}/events/", query)
    assert response.status_code == 400


def test_events_of_other_users_task_is_404(other_api, task_with_events):
    assert other_api.get(f"/api/tasks/{task_with_events.pk}/events/").status_code == 404
