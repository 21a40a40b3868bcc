"""A session's working copy: made ready for an attempt, committed, measured, bundled.

Every command here touches a repository the agent could have rewritten (its config, its
hooks, symlinks in `.git`), so callers run them through a Runner that confines them
(a sandbox seeing only this workspace and its mirror); none carries credentials.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gitops.command import Git, GitError, GitErrorKind, GitUser

EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"


@dataclass(frozen=True)
class FileChange:
    path: str
    insertions: int | None  # None: binary
    deletions: int | None


@dataclass(frozen=True)
class Changes:
    head: str
    files: list[FileChange]
    diff: str
    truncated: bool
    commits: list[tuple[str, str]]  # (sha, subject), oldest first

    @property
    def insertions(self) -> int:
        return sum(f.insertions or 0 for f in self.files)

    @property
    def deletions(self) -> int:
        return sum(f.deletions or 0 for f in self.files)


@dataclass(frozen=True)
class Author:
    name: str
    email: str

    @classmethod
    def parse(cls, text: str) -> Author:
        """ "Name <email>" """
        name, _, rest = text.partition("<")
        email = rest.rstrip().rstrip(">").strip()
        if not name.strip() or "@" not in email:
            raise ValueError(f"not a 'Name <email>' author: {text!r}")
        return cls(name.strip(), email)

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>"


# One step, so that a confined runner starts once: whatever stands in the workspace
# without a repository of its own at the top is cleared and a repository made, and the
# repository borrows `objects` (a mirror's, shared, not copied) when given.
_ENSURE_REPOSITORY = """
set -e
top=$(git rev-parse --show-toplevel 2>/dev/null || true)
if [ "$top" != "$(pwd -P)" ]; then
    find . -mindepth 1 -maxdepth 1 -exec rm -rf {} +
    git init -q .
fi
if [ -n "$1" ]; then
    mkdir -p .git/objects/info
    printf '%s\\n' "$1" > .git/objects/info/alternates
fi
"""
# The workspace on "$branch" at "$start", dropping whatever a killed attempt left behind
# (a forced checkout resets the index and the tracked files; clean the rest).
_RESET = """
git checkout -q --force -B "$branch" "$start"
git clean -q -ffdx
"""

_SET_ORIGIN = """
if [ -n "$4" ]; then git remote set-url origin "$4" 2>/dev/null || git remote add origin "$4"; fi
"""
_CHECK_OUT = _ENSURE_REPOSITORY + 'branch="$2"; start="$3"' + _RESET + _SET_ORIGIN


def check_out(
    git: Git, workspace: Path, *, objects: Path, branch: str, start: str, origin: str = ""
) -> None:
    """In one confined start: the workspace a repository (made if missing) on `branch`
    at `start` (in the mirror `objects` borrows from), nothing a killed attempt left, and
    `origin` the remote the agent sees (without credentials)."""
    argv = ["sh", "-c", _CHECK_OUT, "sh", str(objects), branch, start, origin]
    git.run(argv, cwd=workspace)


def fetch(git: Git, workspace: Path, source: str, refs: dict[str, str]) -> None:
    """Fetch `{source ref: local ref}` from a local repository or bundle; no tags."""
    if refs:
        specs = [f"+{src}:{dst}" for src, dst in refs.items()]
        git("fetch", "-q", "--no-tags", "--no-write-fetch-head", source, *specs, cwd=workspace)


def reset_to(git: Git, workspace: Path, branch: str, start: str) -> None:
    """Check out `branch` at `start`, dropping whatever a killed attempt left behind."""
    script = 'set -e; branch="$1"; start="$2"' + _RESET
    git.run(["sh", "-c", script, "sh", branch, start], cwd=workspace)


def head(git: Git, workspace: Path) -> str | None:
    try:
        return git("rev-parse", "--verify", "-q", "HEAD^{commit}", cwd=workspace).strip()
    except GitError:
        return None


# Fixed identity and time: the same empty first commit, byte for byte, on every machine,
# so a session's starting point needs no saving.
_INITIAL_ENV = {
    "GIT_AUTHOR_NAME": "Agentsite",
    "GIT_AUTHOR_EMAIL": "agentsite@localhost",
    "GIT_AUTHOR_DATE": "1970-01-01T00:00:00+0000",
    "GIT_COMMITTER_NAME": "Agentsite",
    "GIT_COMMITTER_EMAIL": "agentsite@localhost",
    "GIT_COMMITTER_DATE": "1970-01-01T00:00:00+0000",
}


# `git mktree` of nothing stores the empty tree (EMPTY_TREE) and names it: git knows that
# tree without it, but `git fsck` (which an agent may run) reports it missing.
_INITIAL_COMMIT = (
    " ".join(f"{k}='{v}'" for k, v in _INITIAL_ENV.items())
    + " git commit-tree $(git mktree </dev/null) -m 'Start of the session'"
)
RESTORE = "restore"
# A repository-less session's workspace in one confined start: the repository (made if
# missing), its first commit, and the saved commit checked out when it is here; else
# "restore" (this machine never had it: the caller restores the saved bundle).
_CHECK_OUT_SAVED = (
    _ENSURE_REPOSITORY
    + f"""
start="$2"; branch="$3"
if [ -z "$start" ] || ! git cat-file -e "$start^{{commit}}" 2>/dev/null; then
    initial=$({_INITIAL_COMMIT})
    if [ -n "$start" ] && [ "$start" != "$initial" ]; then echo {RESTORE}; exit 0; fi
    start="$initial"
fi
"""
    + _RESET
    + 'echo "$start"\n'
)


def check_out_saved(git: Git, workspace: Path, *, saved: str, branch: str) -> str | None:
    """The workspace on `branch` at the `saved` commit (the session's first commit when
    nothing was saved yet); None when this machine lacks it."""
    out = git.run(["sh", "-c", _CHECK_OUT_SAVED, "sh", "", saved, branch], cwd=workspace)
    start = out.strip().splitlines()[-1] if out.strip() else ""
    return None if start == RESTORE else start


@dataclass(frozen=True)
class RepositoryImage:
    """A small repository's `.git` held in memory (directories in creation order, files
    with their modes), to write into new workspaces without starting git."""

    directories: tuple[str, ...]
    files: tuple[tuple[str, bytes, int], ...]

    @classmethod
    def read(cls, workspace: Path) -> RepositoryImage:
        top = workspace / ".git"
        directories, files = [".git"], []
        for directory, dirs, names in os.walk(top):
            dirs.sort()
            base = Path(directory)
            directories += [str((base / name).relative_to(workspace)) for name in dirs]
            for name in sorted(names):
                path = base / name
                if path.is_symlink():
                    raise ValueError(f"{path} is a symbolic link: not an image's")
                mode = stat.S_IMODE(path.stat().st_mode)
                files.append((str(path.relative_to(workspace)), path.read_bytes(), mode))
        return cls(tuple(directories), tuple(files))

    def write(self, workspace: Path, owner: GitUser | None) -> None:
        """Into the empty `workspace`, every file belonging to `owner` when given; a
        failure leaves nothing behind. Raises GitError."""
        top = workspace / self.directories[0]
        try:
            top.mkdir(0o755)  # first and alone: a repository already there is never touched
        except OSError as exc:
            raise file_error(exc, "the repository could not be written") from exc
        try:
            for relative in self.directories:
                path = workspace / relative
                if path != top:
                    path.mkdir(0o755)
                if owner is not None:
                    os.chown(path, owner.uid, owner.gid)
            for relative, content, mode in self.files:
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
                fd = os.open(workspace / relative, flags, mode)
                try:
                    written = 0
                    while written < len(content):
                        written += os.write(fd, content[written:])
                    if owner is not None:
                        os.fchown(fd, owner.uid, owner.gid)
                finally:
                    os.close(fd)
        except OSError as exc:
            shutil.rmtree(top, ignore_errors=True)
            raise file_error(exc, "the repository could not be written") from exc


def file_error(exc: OSError, what: str) -> GitError:
    """A failure of our own file work on a repository, as git's would be classified."""
    kind = GitErrorKind.DISK_FULL if exc.errno == errno.ENOSPC else GitErrorKind.OTHER
    return GitError(kind, f"{what}: {exc}")


# One confined start for the whole commit: stage everything, commit when anything is
# staged ("$@" is the commit command), print HEAD.
_COMMIT_ALL = """
set -e
git add -A
if ! git diff --cached --quiet; then "$@"; fi
git rev-parse --verify -q 'HEAD^{commit}' || true
"""


def commit_all(
    git: Git, workspace: Path, *, message: str, author: Author, trailers: Sequence[str] = ()
) -> str | None:
    """Commit whatever the agent left uncommitted (its own commits stay as they are);
    returns HEAD afterwards, None in a repository without any commit."""
    # The -c identity is both author and committer.
    commit = ["git", "-c", f"user.name={author.name}", "-c", f"user.email={author.email}"]
    commit += ["commit", "-q", "--no-verify", "--no-gpg-sign", "-F", "-"]
    for trailer in trailers:
        commit += ["--trailer", trailer]
    out = git.run(["sh", "-c", _COMMIT_ALL, "sh", *commit], cwd=workspace,
                  input_bytes=message.encode())  # fmt: skip
    return out.strip() or None


_SEPARATOR = "\0\0--agentsite--\0\0"
# Numstat, commits and the diff (one byte over the cap, to tell a cut) in one start;
# printf writes the separator ("$5") with its NULs.
_CHANGES = r"""
set -e
git diff --no-ext-diff --no-textconv --numstat -z -M "$1" "$2"
printf "$5"
git log --reverse --format=%H%x00%s "$3"
printf "$5"
git diff --no-ext-diff --no-textconv --no-color -M "$1" "$2" | head -c "$4"
"""
_SEPARATOR_PRINTF = r"\0\0--agentsite--\0\0"


def changes(
    git: Git, workspace: Path, *, start: str | None, end: str, max_diff_bytes: int
) -> Changes:
    """What `start..end` changed: files with +/−, the unified diff (capped), commits."""
    base = start or EMPTY_TREE
    log_range = f"{start}..{end}" if start else end
    cap = str(max_diff_bytes + 1)
    argv = ["sh", "-c", _CHANGES, "sh", base, end, log_range, cap, _SEPARATOR_PRINTF]
    numstat, log, diff = git.run(argv, cwd=workspace).split(_SEPARATOR)
    files = []
    fields = numstat.split("\0")
    index = 0
    while index < len(fields) and fields[index]:
        added, deleted, path = fields[index].split("\t", 2)
        if not path:  # a rename: old and new paths follow as their own fields
            path = fields[index + 2]
            index += 2
        files.append(FileChange(path, _count(added), _count(deleted)))
        index += 1
    encoded = diff.encode()
    truncated = len(encoded) > max_diff_bytes
    if truncated:
        diff = encoded[:max_diff_bytes].decode("utf-8", "ignore")
    commits = [tuple(line.split("\0", 1)) for line in log.splitlines() if "\0" in line]
    return Changes(end, files, diff, truncated, commits)  # type: ignore[arg-type]


def _count(value: str) -> int | None:
    return None if value == "-" else int(value)


def bundle(git: Git, workspace: Path, output: Path, *, ref: str, since: str | None) -> bool:
    """Write the commits of `ref` not in `since` (all, without it) as a bundle;
    False when there is nothing to write."""
    what = [f"{since}..{ref}"] if since else [ref]
    try:
        git("bundle", "create", "-q", str(output), *what, cwd=workspace)
    except GitError as exc:
        if "empty bundle" in str(exc).lower() or "refusing to create" in str(exc).lower():
            return False
        raise
    return True


def rebase_onto(git: Git, workspace: Path, upstream: str, author: Author) -> bool:
    """Replay the branch's own commits on `upstream`; False (and nothing changed) on a
    conflict."""
    identity = ["-c", f"user.name={author.name}", "-c", f"user.email={author.email}"]
    try:
        git(*identity, "rebase", "-q", "--no-autostash", upstream, cwd=workspace)
    except GitError as exc:
        if exc.kind is not GitErrorKind.CONFLICT and "could not apply" not in str(exc):
            raise
        git("rebase", "--abort", cwd=workspace)
        return False
    return True
