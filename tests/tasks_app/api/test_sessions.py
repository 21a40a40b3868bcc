from tests.factories import make_session


def test_create_and_list_sessions(api):
    created = api.post("/api/sessions/", {"title": "refactor"}, format="json")
    assert created.status_code == 201
    assert created.json()["title"] == "refactor" and created.json()["resumable"] is False
    listed = api.get("/api/sessions/").json()["results"]
    assert [s["id"] for s in listed] == [created.json()["id"]]


def test_session_detail_of_other_user_is_404(api, other_user):
    session = make_session(other_user)
    assert api.get(f"/api/sessions/{session.pk}/").status_code == 404


def test_sessions_list_shows_only_own(api, user, other_user):
    mine = make_session(user)
    make_session(other_user)
    assert [s["id"] for s in api.get("/api/sessions/").json()["results"]] == [mine.pk]


def test_session_with_overlong_title_is_400(api):
    response = api.post("/api/sessions/", {"title": "x" * 201}, format="json")
    assert response.status_code == 400
    assert "title" in response.json()


def test_session_title_length_counts_what_was_sent(api):
    assert api.post("/api/sessions/", {"title": " " + "x" * 200}, format="json").status_code == 400
    created = api.post("/api/sessions/", {"title": "  padded  "}, format="json")
    assert created.json()["title"] == "padded"
