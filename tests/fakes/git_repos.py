"""Bare git repositories the fake GitHub hosts under one root directory, and the changes tests
script into them with real git (fast-import: thousands of files in one process)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

GIT_TIMEOUT_S = 120.0
SOMEONE = "Someone <someone@example.com>"
GITHUB_AUTHOR = "GitHub <noreply@github.com>"
METADATA_FILE = "fake-github.json"  # inside the bare repository; git ignores unknown files there
# GitHub's own rules: owners are letters, digits and single hyphens; names add '.' and '_'.
_OWNER = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?")
_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_IDENT = re.compile(r"[^<>\n]+ <[^<>\n]*>")
_BAD_REF_CHARS = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")


class UnknownRepository(LookupError):
    """No hosted repository has that full name."""


class GitCommandError(RuntimeError):
    """git exited non-zero; the message carries its stderr."""


@dataclass(frozen=True)
class RepositoryInfo:
    """A hosted repository: `full_name` as created (lookups ignore case, as GitHub's do)."""

    full_name: str
    default_branch: str
    private: bool
    fork_of: str | None
    path: Path

    @property
    def owner(self) -> str:
        return self.full_name.partition("/")[0]

    @property
    def name(self) -> str:
        return self.full_name.partition("/")[2]


def git_env() -> dict[str, str]:
    """An environment in which git reads neither the user's nor the system's configuration."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "LC_ALL": "C",
    }


def run_git(
    git_dir: Path | None, *args: str, stdin: bytes | None = None, check: bool = True
) -> subprocess.CompletedProcess[bytes]:
    argv = ["git", *(("--git-dir", str(git_dir)) if git_dir else ()), *args]
    # subprocess.run kills and reaps git on timeout, so nothing outlives the call.
    result = subprocess.run(
        argv, input=stdin, capture_output=True, env=git_env(), timeout=GIT_TIMEOUT_S, check=False
    )
    if check and result.returncode != 0:
        stderr = result.stderr.decode(errors="replace").strip()
        raise GitCommandError(f"git {' '.join(args[:2])} exited {result.returncode}: {stderr}")
    return result


def split_full_name(full_name: str) -> tuple[str, str]:
    """("owner", "name") of "owner/name"; ValueError when GitHub would not accept it."""
    owner, _, name = full_name.partition("/")
    if (
        not _OWNER.fullmatch(owner)
        or not _NAME.fullmatch(name)
        or name in (".", "..")
        or name.lower().endswith(".git")
    ):
        raise ValueError(f"{full_name!r} is not a repository name like 'owner/name'")
    return owner, name


def is_branch_name(branch: str) -> bool:
    """What `git check-ref-format --branch` accepts, without running git."""
    return not (
        not branch
        or _BAD_REF_CHARS.search(branch)
        or branch.startswith(("-", "/", "."))
        or branch.endswith(("/", ".", ".lock"))
        or ".." in branch
        or "//" in branch
        or "/." in branch
        or "@{" in branch
        or branch == "@"
    )


def _check_path(path: str) -> None:
    parts = path.split("/")
    if "\n" in path or path.startswith('"') or any(p in ("", ".", "..", ".git") for p in parts):
        raise ValueError(f"{path!r} is not a file path inside a repository")


def _data(text: str) -> bytes:
    raw = text.encode()
    return b"data %d\n%s\n" % (len(raw), raw)


def _fast_import_stream(
    ref: str, files: Mapping[str, str | None], message: str, author: str, parent: str | None
) -> bytes:
    if not _IDENT.fullmatch(author):
        raise ValueError(f"author {author!r} is not like 'Name <email>'")
    ident = f"{author} {int(time.time())} +0000"
    lines = [f"commit {ref}\nmark :1\nauthor {ident}\ncommitter {ident}\n".encode(), _data(message)]
    if parent is not None:
        lines.append(f"from {parent}\n".encode())
    for path, content in files.items():
        _check_path(path)
        if content is None:
            lines.append(f"D {path}\n".encode())
        else:
            lines += [f"M 100644 inline {path}\n".encode(), _data(content)]
    return b"".join([*lines, b"\n"])


class GitRepositories:
    """Bare repositories at <root>/<owner>/<name>.git. Scripted writes hold one lock, so they
    never race each other; pushes over HTTP go straight to git, whose ref locks protect them."""

    def __init__(self, root: Path | str | None = None) -> None:
        """`root` None: a temporary directory that close() removes; a given one stays."""
        self._owns_root = root is None
        path = Path(tempfile.mkdtemp(prefix="fake-github-repos-") if root is None else root)
        path.mkdir(parents=True, exist_ok=True)
        self.root = path.resolve()
        self._lock = threading.RLock()

    def close(self) -> None:
        if self._owns_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def find(self, full_name: str) -> RepositoryInfo | None:
        try:
            owner, name = split_full_name(full_name)
        except ValueError:
            return None
        path = self._locate(owner, name)
        if path is None:
            return None
        head = (path / "HEAD").read_text().strip()
        default_branch = head.removeprefix("ref: refs/heads/") if head.startswith("ref:") else ""
        metadata_file = path / METADATA_FILE
        metadata = json.loads(metadata_file.read_text()) if metadata_file.exists() else {}
        canonical = f"{path.parent.name}/{path.name.removesuffix('.git')}"
        private = metadata.get("private", True)
        return RepositoryInfo(canonical, default_branch, private, metadata.get("fork_of"), path)

    def require(self, full_name: str) -> RepositoryInfo:
        info = self.find(full_name)
        if info is None:
            raise UnknownRepository(f"no repository {full_name}")
        return info

    def all(self) -> list[RepositoryInfo]:
        found = [self.find(f"{p.parent.name}/{p.name[:-4]}") for p in self.root.glob("*/*.git")]
        return sorted((i for i in found if i is not None), key=lambda i: i.full_name.lower())

    def create(
        self,
        full_name: str,
        *,
        default_branch: str = "main",
        files: Mapping[str, str | None] | None = None,
        private: bool = True,
    ) -> RepositoryInfo:
        """A bare repository whose default branch holds one commit with `files` (None: a
        README; {}: an empty tree)."""
        owner, name = split_full_name(full_name)
        if not is_branch_name(default_branch):
            raise ValueError(f"{default_branch!r} is not a branch name")
        with self._lock:
            path = self._new_path(full_name, owner, name)
            run_git(
                None, "init", "--quiet", "--bare", f"--initial-branch={default_branch}", str(path)
            )
            self._write_metadata(path, private=private, fork_of=None)
            initial = {"README.md": f"# {name}\n"} if files is None else files
            self._commit(path, default_branch, initial, "Initial commit", GITHUB_AUTHOR, None)
            return self.require(full_name)

    def fork(self, source: str, full_name: str) -> RepositoryInfo:
        """A copy of `source` with all its branches, recorded as its fork."""
        owner, name = split_full_name(full_name)
        with self._lock:
            parent = self.require(source)
            path = self._new_path(full_name, owner, name)
            run_git(
                None, "clone", "--quiet", "--bare", "--no-hardlinks", str(parent.path), str(path)
            )
            run_git(path, "remote", "remove", "origin")
            self._write_metadata(path, private=parent.private, fork_of=parent.full_name)
            return self.require(full_name)

    def commit(
        self,
        full_name: str,
        branch: str,
        files: Mapping[str, str | None],
        message: str,
        *,
        author: str = SOMEONE,
    ) -> str:
        """A commit changing `files` (None deletes one) on `branch`, which is created from the
        default branch if missing; returns its sha."""
        if not is_branch_name(branch):
            raise ValueError(f"{branch!r} is not a branch name")
        with self._lock:
            info = self.require(full_name)
            parent = self.branch_sha(full_name, branch) or self.branch_sha(
                full_name, info.default_branch
            )
            return self._commit(info.path, branch, files, message, author, parent)

    def create_branch(self, full_name: str, branch: str, start: str) -> str:
        """`branch` at the tip of `start`; returns the sha."""
        with self._lock:
            info = self.require(full_name)
            sha = self.branch_sha(full_name, start)
            if sha is None or not is_branch_name(branch):
                raise ValueError(f"cannot create {branch!r} from {start!r} in {full_name}")
            # The empty old value makes git refuse when the branch appeared meanwhile.
            run_git(info.path, "update-ref", f"refs/heads/{branch}", sha, "")
            return sha

    def copy_branch(self, target: str, ref: str, source: str, branch: str) -> None:
        """Point `ref` of `target` at `branch` of `source`, fetching its objects if needed."""
        with self._lock:
            into, origin = self.require(target), self.require(source)
            refspec = f"+refs/heads/{branch}:{ref}"
            run_git(into.path, "fetch", "--quiet", "--no-tags", str(origin.path), refspec)

    def branch_sha(self, full_name: str, branch: str) -> str | None:
        """The branch's tip, or None when there is no such branch."""
        info = self.require(full_name)
        if not is_branch_name(branch):
            return None
        ref = f"refs/heads/{branch}^{{commit}}"
        found = run_git(info.path, "rev-parse", "--verify", "--quiet", ref, check=False)
        return found.stdout.decode().strip() if found.returncode == 0 else None

    def is_ancestor(self, full_name: str, ancestor: str, descendant: str) -> bool:
        info = self.require(full_name)
        args = ("merge-base", "--is-ancestor", ancestor, descendant)
        return run_git(info.path, *args, check=False).returncode == 0

    def log(self, full_name: str, branch: str) -> list[str]:
        """Commit subjects on `branch`, newest first ([] when there is no such branch)."""
        sha = self.branch_sha(full_name, branch)
        if sha is None:
            return []
        subjects = run_git(self.require(full_name).path, "log", "--format=%s", sha, "--")
        return subjects.stdout.decode().splitlines()

    def read_file(self, full_name: str, branch: str, path: str) -> str | None:
        sha = self.branch_sha(full_name, branch)
        if sha is None:
            return None
        blob = run_git(
            self.require(full_name).path, "cat-file", "blob", f"{sha}:{path}", check=False
        )
        return blob.stdout.decode(errors="replace") if blob.returncode == 0 else None

    def remove_all(self) -> None:
        with self._lock:
            for owner_dir in self.root.iterdir():
                shutil.rmtree(owner_dir)

    def _commit(
        self,
        path: Path,
        branch: str,
        files: Mapping[str, str | None],
        message: str,
        author: str,
        parent: str | None,
    ) -> str:
        stream = _fast_import_stream(f"refs/heads/{branch}", files, message, author, parent)
        with tempfile.TemporaryDirectory(prefix="fake-github-marks-") as scratch:
            marks = Path(scratch) / "marks"
            # fast-import refuses to move a ref that no longer contains `parent`, so a push that
            # lands meanwhile makes this fail rather than vanish.
            run_git(path, "fast-import", "--quiet", f"--export-marks={marks}", stdin=stream)
            mark, _, sha = marks.read_text().strip().partition(" ")
        if mark != ":1":
            raise GitCommandError(f"git fast-import left unexpected marks {mark!r}")
        return sha

    def _locate(self, owner: str, name: str) -> Path | None:
        exact = self.root / owner / f"{name}.git"
        if (exact / "HEAD").is_file():
            return exact
        wanted = f"{owner}/{name}.git".lower()
        for candidate in self.root.glob("*/*.git"):
            if f"{candidate.parent.name}/{candidate.name}".lower() == wanted:
                return candidate if (candidate / "HEAD").is_file() else None
        return None

    def _new_path(self, full_name: str, owner: str, name: str) -> Path:
        if self._locate(owner, name) is not None:
            raise ValueError(f"repository {full_name} already exists")
        owner_dir = next(
            (p for p in self.root.iterdir() if p.name.lower() == owner.lower()), self.root / owner
        )
        owner_dir.mkdir(exist_ok=True)
        return owner_dir / f"{name}.git"

    @staticmethod
    def _write_metadata(path: Path, *, private: bool, fork_of: str | None) -> None:
        (path / METADATA_FILE).write_text(json.dumps({"private": private, "fork_of": fork_of}))
