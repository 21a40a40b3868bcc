"""The sandbox's /etc view: copies of the allow-listed entries only, named by what they
hold, made again when the host's files change, pruned only once nobody can use them."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from cli_exec.sandbox import etc_view, layout


@pytest.fixture
def etc(tmp_path: Path) -> Path:
    """A host /etc in miniature: listed files, a listed directory of certificates with
    symbolic links (relative and absolute), and files that must never be shown."""
    root = tmp_path / "etc"
    (root / "ssl" / "certs").mkdir(parents=True)
    (root / "ssl" / "private").mkdir()
    (root / "ssl" / "private" / "host.key").write_text("PRIVATE KEY")
    (root / "ssl" / "certs" / "ca.pem").write_text("CERT A")
    (root / "ssl" / "certs" / "abcd1234.0").symlink_to("ca.pem")
    (root / "ssl" / "certs" / "system.pem").symlink_to("/usr/share/ca-certificates/x.crt")
    (root / "ld.so.cache").write_bytes(b"\x00cache")
    (root / "os-release").symlink_to("../usr/lib/os-release")
    (root / "python3.11").mkdir()
    (root / "python3.11" / "sitecustomize.py").write_text("# site\n")
    (root / "shadow").write_text("root:$6$secret")
    (root / "passwd").write_text("root:x:0:0:host's own:/root:/bin/bash\n")
    return root


def listing(directory: Path) -> dict[str, str]:
    """Every path under `directory`: a link's target, a file's text, or "dir"."""
    found = {}
    for path in sorted(directory.rglob("*")):
        relative = str(path.relative_to(directory))
        if path.is_symlink():
            found[relative] = "-> " + os.readlink(path)
        elif path.is_dir():
            found[relative] = "dir"
        else:
            found[relative] = path.read_text(errors="replace")
    return found


def test_a_view_holds_copies_of_the_listed_entries_and_the_sandboxs_own_users(etc, tmp_path):
    view = etc_view.ensure(tmp_path / "views", str(etc))
    assert listing(view) == {
        "group": layout.GROUP,
        "hosts": layout.HOSTS,
        "ld.so.cache": "\x00cache",
        "os-release": "-> ../usr/lib/os-release",
        "passwd": layout.PASSWD,
        "python3.11": "dir",
        "python3.11/sitecustomize.py": "# site\n",
        "ssl": "dir",
        "ssl/certs": "dir",
        "ssl/certs/abcd1234.0": "-> ca.pem",
        "ssl/certs/ca.pem": "CERT A",
        "ssl/certs/system.pem": "-> /usr/share/ca-certificates/x.crt",
    }
    # Copies, not links to the host's files: the host's /etc is never reachable through it.
    assert (view / "ssl" / "certs" / "ca.pem").stat().st_ino != (
        etc / "ssl" / "certs" / "ca.pem"
    ).stat().st_ino
    assert view.stat().st_mode & 0o777 == 0o755
    assert (view / "passwd").stat().st_mode & 0o777 == 0o644


def test_the_same_host_files_give_the_same_view_and_a_change_below_a_listed_directory_a_new_one(
    etc, tmp_path
):
    views = tmp_path / "views"
    first = etc_view.ensure(views, str(etc))
    built_at = first.stat().st_ino
    assert etc_view.ensure(views, str(etc)) == first and first.stat().st_ino == built_at
    # Files outside the list change nothing.
    (etc / "shadow").write_text("root:$6$other")
    assert etc_view.ensure(views, str(etc)) == first
    # A certificate added (as update-ca-certificates does): a new view, the old one kept
    # for the sandboxes started with it.
    (etc / "ssl" / "certs" / "new.pem").write_text("CERT B")
    second = etc_view.ensure(views, str(etc))
    assert second != first and first.is_dir()
    assert (second / "ssl" / "certs" / "new.pem").read_text() == "CERT B"
    # A file rewritten in place, same size (stamped a second later: the kernel's clock for
    # file times is coarse, and two writes within one tick could look the same).
    site = etc / "python3.11" / "sitecustomize.py"
    before = site.stat().st_mtime_ns
    site.write_text("# SITE\n")
    os.utime(site, ns=(before + 10**9, before + 10**9))
    third = etc_view.ensure(views, str(etc))
    assert third not in (first, second)
    assert (third / "python3.11" / "sitecustomize.py").read_text() == "# SITE\n"


def test_a_view_another_process_made_meanwhile_is_taken_and_the_copy_dropped(etc, tmp_path):
    views = tmp_path / "views"
    view = etc_view.ensure(views, str(etc))
    etc_view._build(views, view, str(etc))  # a sibling that looked before the rename
    assert sorted(p.name for p in views.iterdir()) == [view.name]


def test_prune_removes_only_views_nobody_chose_for_long(etc, tmp_path):
    views = tmp_path / "views"
    old = etc_view.ensure(views, str(etc))
    (etc / "ld.so.cache").write_bytes(b"\x00newer cache")
    recent = etc_view.ensure(views, str(etc))
    (etc / "ld.so.cache").write_bytes(b"\x00newest cache!")
    current = etc_view.ensure(views, str(etc))
    day_ago = time.time() - 86400
    os.utime(old, (day_ago, day_ago))
    os.utime(current, (day_ago, day_ago))  # kept: the one chosen now, whatever its age
    etc_view.prune(views, current, unused_for_s=3600)
    assert sorted(views.iterdir()) == sorted([recent, current])


def test_the_hosts_listed_entries_exist_and_nothing_unlisted_is_copied(tmp_path):
    names = etc_view.entries()
    assert "ld.so.cache" in names and "ssl/certs" in names
    view = etc_view.ensure(tmp_path / "views")
    top = {p.name for p in view.iterdir()}
    assert top <= {name.split("/")[0] for name in names} | {"passwd", "group", "hosts"}
    assert not {"shadow", "gshadow", "sudoers", "ssh", "machine-id"} & top
