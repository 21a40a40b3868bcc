import os

import redis

from agentsite import launcher


def test_embedded_redis_starts_answers_and_is_gone_afterwards(monkeypatch, tmp_path):
    monkeypatch.setattr(launcher, "VAR", tmp_path)
    started_pids: list[int] = []
    real_popen = launcher.subprocess.Popen

    def recording_popen(*args, **kwargs):
        process = real_popen(*args, **kwargs)
        started_pids.append(process.pid)
        return process

    monkeypatch.setattr(launcher.subprocess, "Popen", recording_popen)
    with launcher.redis_url({}) as url:
        assert redis.Redis.from_url(url).ping()
    (pid,) = started_pids
    assert not os.path.exists(f"/proc/{pid}")
    assert any(p.name.startswith("appendonly") for p in (tmp_path / "redis").iterdir())


def test_configured_redis_url_is_used_as_is():
    with launcher.redis_url({"REDIS_URL": "redis://example:1/2"}) as url:
        assert url == "redis://example:1/2"


def test_test_command_passes_every_argument_to_pytest(monkeypatch):
    seen = []
    monkeypatch.setattr(launcher, "command_test", lambda args: seen.append(args) or 0)
    assert launcher.main(["test", "-q", "-k", "not slow", "tests/x.py"]) == 0
    assert seen == [["-q", "-k", "not slow", "tests/x.py"]]
