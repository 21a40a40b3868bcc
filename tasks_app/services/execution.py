"""Running one claimed attempt of a task: the CLI under supervision, events stored live.

The attempt owns the task while the task is `running` with this attempt number; every
write is guarded by that, so a worker that lost the task (reaped, cancelled) stops its
CLI instead of writing over whoever owns it now.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from functools import partial

import structlog
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone

from cli_exec import CliStartError
from cli_exec.claude import ClaudeOptions, RunSummary, Verdict, build_argv, build_env, summarize_run
from cli_exec.events import CliEvent
from cli_exec.hub import RunHub
from cli_exec.redact import Redactor
from cli_exec.runner import CliCommand, CliRun, RunLimits, RunOutcome, StopReason
from cli_exec.sandbox import SandboxRun, SandboxStartError, SandboxUnavailable
from cli_exec.sandbox.launch import JOIN_ERROR
from tasks_app import selectors
from tasks_app.compiled_sql import update_matching
from tasks_app.metrics import CLI_PROCESSES
from tasks_app.models import Task, TaskStatus
from tasks_app.services import (
    db_outage,
    model_breaker,
    outcomes,
    sandboxing,
    traces,
    transcripts,
    workspaces,
)
from tasks_app.services.cli_binary import resolve_cli
from tasks_app.services.event_writer import EventWriter
from tasks_app.services.events import NewEvent, StreamOwnershipLost
from tasks_app.services.monitor import FLAG_POLL_S, AttemptMonitor, StopCause
from tasks_app.services.sessions import cli_config_path, workspace_path
from tasks_app.services.workspaces import WorkspaceError

log = structlog.get_logger(__name__)
CLI_PATH = "/usr/local/bin:/usr/bin:/bin"
# What the sandbox's launcher and bubblewrap say when they fail before the CLI runs.
SANDBOX_ERRORS = ("bwrap: ", "setpriv: ", JOIN_ERROR)


def known_secrets() -> list[str]:
    """Values that must never reach a stored or streamed event."""
    candidates = [
        settings.SECRET_KEY,
        settings.ANTHROPIC_API_KEY,
        settings.CLAUDE_CODE_OAUTH_TOKEN,
        settings.GITHUB_TOKEN,
        settings.GITHUB_WEBHOOK_SECRET,
        settings.DATABASES["default"].get("PASSWORD") or "",
    ]
    return [value for value in candidates if value]


def remaining_daily_budget(task: Task) -> Decimal | None:
    budget = settings.AGENT_USER_DAILY_BUDGET_USD
    if budget is None:
        return None
    return budget - selectors.user_spent_today(owner=task.owner)


def effective_budget(task: Task) -> Decimal | None:
    """The task's own cap, lowered to what is left of the owner's daily budget."""
    remaining = remaining_daily_budget(task)
    caps = [cap for cap in (task.max_budget_usd, remaining) if cap is not None]
    return min(caps) if caps else None


def build_command(
    task: Task, *, budget: Decimal | None, cli: str, sandbox: SandboxRun | None
) -> CliCommand:
    """The CLI's command for this attempt; inside `sandbox` when there is one, where the
    CLI reaches the model through the sandbox's gateway with a per-run token."""
    session = task.session
    workspace = workspace_path(session)
    config_dir = cli_config_path(session)
    options = ClaudeOptions(
        cli=cli,
        max_turns=task.max_turns,
        max_budget_usd=budget,
        permission_mode=settings.AGENT_PERMISSION_MODE or None,
        allowed_tools=tuple(settings.AGENT_ALLOWED_TOOLS),
        resume_session_id=session.cli_session_id or None,
    )
    extra = {"IS_SANDBOX": "1"} if settings.AGENT_PERMISSION_MODE == "bypassPermissions" else {}
    if sandbox is not None:
        extra.update(sandbox.model_env)
    env = build_env(
        config_dir=config_dir,
        path=CLI_PATH,
        api_key=None if sandbox else settings.ANTHROPIC_API_KEY or None,
        base_url=None if sandbox else settings.ANTHROPIC_BASE_URL or None,
        oauth_token=None if sandbox else settings.CLAUDE_CODE_OAUTH_TOKEN or None,
        max_api_retries=settings.AGENT_CLI_API_RETRIES,
        extra=extra,
    )
    command = CliCommand(
        argv=build_argv(options),
        cwd=workspace,
        env=env,
        stdin=task.prompt.encode("utf-8"),
        secrets=tuple(known_secrets()),
    )
    # Held: the sandbox starts at once, the CLI inside once the workspace is filled.
    return sandbox.wrap(command, held=True) if sandbox is not None else command


def run_limits(task: Task) -> RunLimits:
    return RunLimits(
        wall_timeout_s=float(task.timeout_s),
        idle_timeout_s=float(settings.AGENT_IDLE_TIMEOUT_S),
        max_output_bytes=settings.AGENT_MAX_OUTPUT_BYTES,
        # A Write tool call carrying a big file arrives as one line; it must fit.
        max_line_bytes=16 * 1_048_576,
        stop_grace_s=settings.AGENT_STOP_GRACE_S,
        # A quiet run's loop wakes when the writer or the monitor asks (wake_by) or a
        # flag wakes it (watch_flags); the tick is only the net under them.
        tick_s=FLAG_POLL_S,
    )


def record_pid(task: Task, attempt: int, pid: int) -> None:
    match = {"pk": task.pk, "status": TaskStatus.RUNNING, "attempts": attempt}
    update_matching(Task, match, {"pid": pid})


class ConnectionHandBack:
    """The thread that handles an attempt's batches (the hub's, or the job's own for a
    run too heavy to share it) gives its database connection back after a batch that
    wrote (to the pool, or closed without one): a connection held while it waits would
    be one more than the process needs; never in the middle of a transaction. Most
    batches only push (a preview) and hold no connection: then nothing is done
    (close_old_connections would walk every database alias: about a ninth of a slot's
    supervision time in a profile). The connection is looked up again only when the
    calling thread changes."""

    def __init__(self) -> None:
        self._thread = 0
        self._database: BaseDatabaseWrapper | None = None

    def __call__(self) -> None:
        database = self._database
        if database is None or self._thread != threading.get_ident():
            self._thread = threading.get_ident()
            database = self._database = connections[DEFAULT_DB_ALIAS]
        if database.connection is not None and not database.in_atomic_block:
            database.close_if_unusable_or_obsolete()


# One per process: every attempt's CLI of the process is supervised by its thread.
RUN_HUB = RunHub()
os.register_at_fork(after_in_child=RUN_HUB.forget_parents_thread)


@dataclass
class AttemptSupervision:
    """What the hub does with an attempt's batches: store and push them, poll the
    monitor, and remember why we stopped the CLI, if we did."""

    run: CliRun
    writer: EventWriter
    monitor: AttemptMonitor
    cause: StopCause | None = None
    hand_back_connection: ConnectionHandBack = field(default_factory=ConnectionHandBack)

    def on_batch(self, batch: list[CliEvent]) -> None:
        # Empty batches too: events held through a database outage go in as soon as it
        # ends.
        run = self.run
        if self.cause is not StopCause.LOST:
            try:
                self.writer.write(batch)
            except StreamOwnershipLost:
                self.cause = StopCause.LOST
                run.request_stop(StopReason.REQUESTED)
            flush_at = self.writer.flush_at()
            if flush_at is not None:
                run.wake_by(flush_at)  # a quiet CLI must not hold its last lines back
        if self.cause is None:
            self.cause = self.monitor.poll()
            if self.cause is not None:
                log.info("stopping_cli", cause=self.cause.value)
                run.request_stop(StopReason.REQUESTED)
            else:
                run.wake_by(self.monitor.next_poll_at())
        self.hand_back_connection()


def supervise(run: CliRun, writer: EventWriter, monitor: AttemptMonitor) -> StopCause | None:
    """Pump the CLI's batches into the writer until it ends (in the process's hub);
    returns why we stopped it."""
    supervision = AttemptSupervision(run, writer, monitor)
    # The caller waits for the run's end holding no connection: the hub's writes take
    # theirs from the same pool (of one, in a prefork pool process).
    ConnectionHandBack()()
    stop_watching_flags = monitor.watch_flags(run.wake)
    try:
        RUN_HUB.supervise(run, supervision.on_batch)
    finally:
        stop_watching_flags()
    return supervision.cause


@dataclass(frozen=True)
class AttemptEnd:
    """How an attempt ended, once everything it ran is gone."""

    summary: RunSummary
    final_events: list[NewEvent] = field(default_factory=list)
    exit_code: int | None = None
    handed_back: str = ""  # why the attempt goes back to the queue unused; "" if not
    finished_at: datetime | None = None


def execute_claimed_task(task: Task) -> TaskStatus | None:
    """Run the attempt `task` was just claimed for; returns the status it ended in."""
    attempt = task.attempts
    structlog.contextvars.bind_contextvars(task_id=task.pk, attempt=attempt, worker=task.worker)
    budget = effective_budget(task)
    if budget is not None and budget <= 0:
        ended: AttemptEnd | None = AttemptEnd(
            outcomes.refusal("Your daily budget was spent before this task could start.")
        )
    else:
        ended = run_sandboxed_attempt(task, attempt, budget)
    if ended is None:
        log.warning("attempt_lost_ownership")
        return None
    if model_breaker.record(ended.summary) and not ended.handed_back:
        ended = replace(ended, handed_back="the model API is unavailable (circuit breaker open)")
    # Recorded only now: the run's processes, sandbox, sockets and token are gone, so
    # whoever sees the task finished sees nothing of it still running. Guarded by the
    # attempt, so running it again after a lost connection cannot end the task twice.
    return db_outage.retry_while_unreachable(
        partial(
            outcomes.finish_attempt,
            task,
            attempt=attempt,
            summary=ended.summary,
            final_events=ended.final_events,
            exit_code=ended.exit_code,
            handed_back=ended.handed_back,
            finished_at=ended.finished_at,
        ),
        what="finish_attempt",
    )


def run_sandboxed_attempt(task: Task, attempt: int, budget: Decimal | None) -> AttemptEnd | None:
    """Find where the workspace starts, start the attempt's sandbox (unless
    AGENT_SANDBOX=off) while git fills the workspace, run the attempt and keep its work;
    None when the attempt lost the task to someone else meanwhile."""
    session = task.session
    config_dir, cli = cli_config_path(session), resolve_cli()
    with contextlib.ExitStack() as stack:
        try:
            located = workspaces.locate_checkout(task)
            transcripts.restore_transcript(
                session=session, config_dir=config_dir, workspace=located.workspace
            )
            sandbox = stack.enter_context(
                sandboxing.attempt_sandbox(
                    task,
                    workspace=located.workspace,
                    config_dir=config_dir,
                    cli=cli,
                    read_only=(located.mirror,) if located.mirror else (),
                    allow_hosts=(located.git_host,) if located.git_host else (),
                )
            )
            if sandbox is None:  # nothing starts before the files are there
                located.check_out()
            command = build_command(task, budget=budget, cli=cli, sandbox=sandbox)
        except (WorkspaceError, SandboxStartError, SandboxUnavailable, OSError, ValueError) as exc:
            return AttemptEnd(unprepared(exc))
        fill = partial(fill_held, located, sandbox) if sandbox is not None else None
        stack.enter_context(workspaces.replenishing(located.spare))
        ended = run_attempt(task, attempt, command, sandbox, fill)
    # The sandbox is gone: nothing of the agent runs while its work is committed.
    if ended is not None and ended.summary.verdict is Verdict.SUCCEEDED:
        assert located.checkout is not None  # noqa: S101 - a run that succeeded had its files
        ended = keep_work(task, located.checkout, ended)
    return ended


def fill_held(located: workspaces.Located, sandbox: SandboxRun) -> None:
    """The workspace filled while the held sandbox starts; then the CLI inside may start
    (or, when it could not be filled, the sandbox ends without it)."""
    try:
        located.check_out()
    finally:
        sandbox.release(start=located.checkout is not None)


def unprepared(exc: Exception) -> RunSummary:
    """The verdict of an attempt whose workspace or sandbox could not be made ready."""
    if isinstance(exc, WorkspaceError):
        return outcomes.refusal(str(exc), transient=exc.transient)
    if isinstance(exc, SandboxStartError | SandboxUnavailable):
        return outcomes.refusal(f"The sandbox could not be started: {exc}.", transient=True)
    return outcomes.refusal(f"The task could not be prepared: {exc}.", transient=True)


def keep_work(task: Task, checkout: workspaces.Checkout, ended: AttemptEnd) -> AttemptEnd:
    """Commit and push (or save) a successful attempt's work; an attempt whose work
    cannot be kept is not a success."""
    try:
        # Safe to run again after a lost connection: the commit then finds nothing new
        # and returns the same head, and the push or bundle is the same.
        db_outage.retry_while_unreachable(
            partial(workspaces.publish_attempt, task, checkout, ended.summary.result_text),
            what="publish_attempt",
        )
    except WorkspaceError as exc:
        verdict = Verdict.TRANSIENT if exc.transient else Verdict.FAILED
        return replace(ended, summary=replace(ended.summary, verdict=verdict, error=str(exc)))
    return ended


def run_attempt(
    task: Task,
    attempt: int,
    command: CliCommand,
    sandbox: SandboxRun | None,
    after_start: Callable[[], None] | None = None,
) -> AttemptEnd | None:
    """Run the command under supervision; `after_start` runs once it has started (the
    workspace filled while a held sandbox starts)."""
    started = time.monotonic()
    writer = EventWriter(task, attempt, redactor=Redactor(command.secrets))
    monitor = AttemptMonitor(
        task=task, attempt=attempt, limit_hit=sandbox.limit_hit if sandbox else None
    )
    with traces.cli_span(task) as span, CliRun(command, run_limits(task)) as run:
        try:
            pid = run.start()
            record_pid(task, attempt, pid)
            traces.cli_started(span, pid)
        except (CliStartError, OSError) as exc:
            what = "sandbox" if sandbox is not None else "CLI"
            error = f"The {what} could not be started: {exc}."
            return AttemptEnd(outcomes.refusal(error, transient=True))
        if after_start is not None:
            try:
                after_start()
            except (WorkspaceError, OSError, ValueError) as exc:
                return AttemptEnd(unprepared(exc))  # leaving the block ends the run
        CLI_PROCESSES.inc()
        try:
            cause = supervise(run, writer, monitor)
        finally:
            CLI_PROCESSES.dec()
        outcome: RunOutcome = run.outcome
        summary = judge(outcome, sandbox)
        traces.cli_ended(span, outcome, summary)
    if cause is StopCause.LOST:
        return None
    # What follows writes to the database (events, transcript, work, ending), each step
    # safe to repeat: an outage around the run's end is waited out, not a failed attempt.
    try:
        db_outage.retry_while_unreachable(partial(writer.flush, final=True), what="events")
    except StreamOwnershipLost:
        return None
    if summary.cli_session_id:
        db_outage.retry_while_unreachable(
            partial(
                transcripts.save_transcript,
                session=task.session,
                config_dir=cli_config_path(task.session),
                cli_session_id=summary.cli_session_id,
                secrets=tuple(known_secrets()),
            ),
            what="save_transcript",
        )
    log.info(
        "attempt_finished",
        verdict=summary.verdict.value,
        stop_reason=outcome.stop_reason.value,
        exit_code=outcome.exit_code,
        lines=outcome.stdout_lines,
        seconds=round(time.monotonic() - started, 3),
    )
    return AttemptEnd(
        summary,
        final_events=writer.remaining(),
        exit_code=outcome.exit_code,
        handed_back=(
            "the worker is shutting down"
            if cause is StopCause.DRAIN and summary.verdict is not Verdict.SUCCEEDED
            else ""
        ),
        finished_at=timezone.now(),
    )


def judge(outcome: RunOutcome, sandbox: SandboxRun | None) -> RunSummary:
    """The run's verdict; a sandbox limit the agent ran into fails it, whatever the CLI
    made of it (a fork bomb's failed forks or an OOM-killed tool are not a success)."""
    summary = summarize_run(outcome)
    if sandbox is None:
        return summary
    limit = sandbox.limit_hit()
    if limit is not None:
        return replace(
            summary, verdict=Verdict.FAILED, error=f"The agent hit {limit} and was stopped."
        )
    # Those tools start their lines with their name (a path in the line may hold one too).
    said = [line for line in outcome.stderr_tail.splitlines() if line.startswith(SANDBOX_ERRORS)]
    if outcome.result is None and said:
        # The sandbox failed before the CLI ran: say so, and keep it transient.
        return replace(summary, error=f"The sandbox could not be started: {said[-1]}")
    return summary
