"""Where the CLI keeps session transcripts, so they can be saved and restored."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cli_exec.claude import find_transcript, project_dir_name, transcript_dir


@pytest.mark.parametrize(
    ("cwd", "name"),
    [
        # All observed with the real CLI 2.1.197.
        ("/tmp/probe/ws", "-tmp-probe-ws"),
        ("/tmp/cliexec_probe/ws/a_b.c d~e+f@g", "-tmp-cliexec-probe-ws-a-b-c-d-e-f-g"),
        ("/tmp/cliexec_probe/ws/Üñí_Cafe9", "-tmp-cliexec-probe-ws-----Cafe9"),
        ("/a/\U0001f600", "-a---"),  # one astral character is two UTF-16 units
    ],
)
def test_project_dir_name_replaces_every_non_alphanumeric(cwd, name):
    assert project_dir_name(cwd) == name


def test_long_project_dir_name_is_cut_and_hashed_like_the_cli():
    cwd = "/tmp/cliexec_probe/ws/" + "x" * 120 + "/" + "y" * 120

    name = project_dir_name(cwd)

    # Observed: 200 mangled characters, "-", then the base-36 hash of the original path.
    assert name == project_dir_name(cwd[:200]) + "-dn0uwg"
    assert len(name) == 207


def test_transcript_dir_resolves_symlinks_like_getcwd(tmp_path: Path):
    real = tmp_path / "real_ws"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    config = tmp_path / "cfg"

    assert transcript_dir(config, link) == config / "projects" / project_dir_name(
        os.path.realpath(real)
    )


def test_find_transcript_finds_it_in_any_project_dir(tmp_path: Path):
    transcript = tmp_path / "projects" / "-some-where" / "abc-123.jsonl"
    transcript.parent.mkdir(parents=True)
    transcript.write_text("{}\n")

    assert find_transcript(tmp_path, "abc-123") == transcript


def test_find_transcript_returns_none_when_missing(tmp_path: Path):
    assert find_transcript(tmp_path, "abc-123") is None


@pytest.mark.parametrize("session_id", ["*", "../x", "a/b", "", "-rf"])
def test_find_transcript_refuses_ids_that_are_not_plain_tokens(tmp_path: Path, session_id):
    (tmp_path / "projects" / "p").mkdir(parents=True)
    (tmp_path / "projects" / "p" / "x.jsonl").write_text("{}\n")

    assert find_transcript(tmp_path, session_id) is None
