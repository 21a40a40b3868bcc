"""Git plumbing for agent workspaces: pure Python, no Django; callers pass every setting.

`command` runs git with an explicit environment and typed errors; `mirror` keeps a
machine's bare copy of a remote (the only git that talks to it, with credentials);
`workspace` prepares, commits, measures and bundles a session's working copy; `spare`
keeps one ready checkout per repository that a new workspace takes by a rename.
"""

from gitops.command import Git, GitAuth, GitError, GitErrorKind, GitUser, HostRunner, Runner
from gitops.workspace import Author, Changes, FileChange

__all__ = [
    "Author",
    "Changes",
    "FileChange",
    "Git",
    "GitAuth",
    "GitError",
    "GitErrorKind",
    "GitUser",
    "HostRunner",
    "Runner",
]
