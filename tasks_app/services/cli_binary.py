"""Which CLI binary this machine runs: AGENT_CLI, else `claude` on PATH, else the npm one."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from django.conf import settings

NPM_CLI = Path(settings.BASE_DIR) / "node_modules" / ".bin" / "claude"


def resolve_cli() -> str:
    if settings.AGENT_CLI:
        return settings.AGENT_CLI
    return shutil.which("claude") or str(NPM_CLI)


class CliUnavailable(Exception):
    pass


def cli_version(timeout_s: float = 10.0) -> str:
    """The output of `<cli> --version`; raises CliUnavailable when it does not run."""
    cli = resolve_cli()
    try:
        done = subprocess.run(  # noqa: S603 - the operator configures which CLI runs
            [cli, "--version"],
            capture_output=True,
            timeout=timeout_s,
            env={"PATH": "/usr/local/bin:/usr/bin:/bin", "DISABLE_AUTOUPDATER": "1"},
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CliUnavailable(f"{cli} --version failed: {exc}") from exc
    if done.returncode != 0:
        tail = done.stderr.decode("utf-8", "replace").strip()[-200:]
        raise CliUnavailable(f"{cli} --version exited {done.returncode}: {tail}")
    return done.stdout.decode("utf-8", "replace").strip()
