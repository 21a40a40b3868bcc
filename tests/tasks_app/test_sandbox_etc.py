"""Which /etc view (and cgroup support) a worker's sandboxes start with: one view per host
state, looked for at each start, checked against the host every HOST_CHECK_S."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from django.test import override_settings

from cli_exec.sandbox import LimitSupport, SandboxStartError, etc_view
from tasks_app.services import sandboxing

LIMITS = LimitSupport(pids="cgroup v1", memory=None, reason="cgroup memory not writable")


@pytest.fixture
def root(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setattr(sandboxing, "_host_facts", None)
    with override_settings(AGENT_WORKSPACE_ROOT=str(tmp_path)):
        yield tmp_path


@pytest.fixture
def signatures(monkeypatch) -> tuple[list[str], list[str]]:
    """(each signature computed, the host's states: append one to change the host)."""
    computed: list[str] = []
    host = ["0000000000000001"]

    def signature(etc: str = etc_view.HOST_ETC) -> str:
        computed.append(host[-1])
        return host[-1]

    monkeypatch.setattr(etc_view, "signature", signature)
    return computed, host


def test_the_host_is_checked_once_an_interval_and_a_removed_view_made_again(
    root, signatures, monkeypatch
):
    computed, _ = signatures
    monkeypatch.setattr(sandboxing, "HOST_CHECK_S", 3600.0)
    view = sandboxing.host_facts().etc_view
    assert view == root / sandboxing.ETC_VIEWS_DIR / "0000000000000001"
    assert (view / "passwd").is_file()
    assert sandboxing.host_facts().etc_view == view and len(computed) == 1
    # An operator cleared the workspace root: the next start makes it again.
    shutil.rmtree(view)
    assert sandboxing.host_facts().etc_view == view and view.is_dir() and len(computed) == 2


def test_a_changed_host_gets_a_new_view_at_the_next_check_and_the_old_one_stays(
    root, signatures, monkeypatch
):
    computed, host = signatures
    monkeypatch.setattr(sandboxing, "HOST_CHECK_S", 0.0)
    first = sandboxing.host_facts().etc_view
    host.append("0000000000000002")
    second = sandboxing.host_facts().etc_view
    assert second.name == "0000000000000002" and first.is_dir()  # running sandboxes keep it
    assert sandboxing.sandbox_config().etc_view == str(second)


def test_a_view_that_cannot_be_made_refuses_the_sandbox(tmp_path, monkeypatch):
    monkeypatch.setattr(sandboxing, "_host_facts", None)
    (tmp_path / "file").write_text("not a directory")
    with override_settings(AGENT_WORKSPACE_ROOT=str(tmp_path / "file")):
        with pytest.raises(SandboxStartError, match="/etc could not be made"):
            sandboxing.host_facts()


def test_another_workspace_root_gets_its_own_view(root, signatures, monkeypatch):
    monkeypatch.setattr(sandboxing, "HOST_CHECK_S", 3600.0)
    first = sandboxing.host_facts().etc_view
    other = root / "other"
    with override_settings(AGENT_WORKSPACE_ROOT=str(other)):
        assert sandboxing.host_facts().etc_view == other / sandboxing.ETC_VIEWS_DIR / first.name
    assert sandboxing.host_facts().etc_view == first


def test_the_cgroup_support_is_looked_up_with_the_view_not_at_every_start(
    root, signatures, monkeypatch
):
    monkeypatch.setattr(sandboxing, "HOST_CHECK_S", 3600.0)
    looked_up = []
    monkeypatch.setattr(sandboxing, "detect_limits", lambda: looked_up.append(1) or LIMITS)
    configs = [sandboxing.sandbox_config() for _ in range(3)]
    assert [c.limit_support for c in configs] == [LIMITS] * 3 and looked_up == [1]
    # The interval passed: looked up again, once.
    monkeypatch.setattr(sandboxing, "_host_facts", replace(sandboxing.host_facts(), next_check=0))
    sandboxing.host_facts(), sandboxing.host_facts()
    assert looked_up == [1, 1]


def test_a_relative_workspace_root_gives_an_absolute_view(tmp_path, signatures, monkeypatch):
    monkeypatch.setattr(sandboxing, "_host_facts", None)
    monkeypatch.chdir(tmp_path)
    with override_settings(AGENT_WORKSPACE_ROOT="relative/root"):
        view = sandboxing.host_facts().etc_view
    assert view == tmp_path / "relative" / "root" / sandboxing.ETC_VIEWS_DIR / view.name
    assert view.is_absolute() and view.is_dir()
