from tasks_app.models import Source, TaskStatus
from tests.factories import make_session, make_task

URL = "/api/tasks/"


def test_list_shows_only_own_tasks_newest_first(api, user, other_user):
    first = make_task(user)
    second = make_task(user)
    make_task(other_user)
    body = api.get(URL).json()
    assert [t["id"] for t in body["results"]] == [second.pk, first.pk]
    assert set(body) == {"next", "previous", "results"}


def test_list_filters_by_status_source_and_session(api, user):
    session = make_session(user)
    running = make_task(user, status=TaskStatus.RUNNING, session=session)
    make_task(user, status=TaskStatus.QUEUED, source=Source.GITHUB)
    assert [t["id"] for t in api.get(URL, {"status": "running"}).json()["results"]] == [running.pk]
    assert [t["source"] for t in api.get(URL, {"source": "github"}).json()["results"]] == ["github"]
    by_session = api.get(URL, {"session": session.pk}).json()["results"]
    assert [t["id"] for t in by_session] == [running.pk]


def test_list_with_unknown_status_is_400(api):
    response = api.get(URL, {"status": "exploded"})
    assert response.status_code == 400
    assert "status" in response.json()


def test_list_with_non_numeric_session_is_400(api):
    assert api.get(URL, {"session": "abc"}).status_code == 400


def test_list_paginates_with_cursor_without_overlap(api, user):
    tasks = [make_task(user) for _ in range(7)]
    seen: list[int] = []
    url = f"{URL}?page_size=3"
    while url:
        body = api.get(url).json()
        seen += [t["id"] for t in body["results"]]
        url = body["next"]
    assert seen == [t.pk for t in reversed(tasks)]


def test_list_with_garbage_cursor_is_404_invalid_cursor(api):
    response = api.get(URL, {"cursor": "not-a-cursor"})
    assert response.status_code == 404
    assert response.json() == {"detail": "Invalid cursor"}


def test_list_with_bad_page_size_is_400(api):
    assert api.get(URL, {"page_size": "0"}).status_code == 400
    assert api.get(URL, {"page_size": "1000"}).status_code == 400


def test_list_with_blank_filter_is_400(api):
    response = api.get(URL, {"source": ""})
    assert response.status_code == 400
    assert "source" in response.json()


def test_list_with_a_repeated_parameter_is_400(api):
    response = api.get(URL + "?session=1&session=2")
    assert response.status_code == 400
    assert response.json() == {"session": ["Give this parameter only once."]}


def test_list_with_an_unknown_parameter_is_400(api):
    response = api.get(URL, {"stauts": "failed"})
    assert response.status_code == 400
    assert response.json() == {"stauts": ["Unknown parameter."]}
