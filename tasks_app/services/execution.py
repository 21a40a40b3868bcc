"""Running one claimed attempt of a task: the CLI under supervision, events stored live.

The attempt owns the task while the task is `running` with this attempt number; every
write is guarded by that, so a worker that lost the task (reaped, cancelled) stops its
CLI instead of writing over whoever owns it now.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from decimal import Decimal

import structlog
from django.conf import settings
from django.utils import timezone

from cli_exec import CliStartError
from cli_exec.claude import ClaudeOptions, RunSummary, Verdict, build_argv, build_env, summarize_run
from cli_exec.events import CliEvent, EventKind
from cli_exec.runner import CliCommand, CliRun, RunLimits, RunOutcome, StopReason
from tasks_app import selectors
from tasks_app.metrics import CLI_PROCESSES
from tasks_app.models import Task, TaskStatus
from tasks_app.services import outcomes, transcripts
from tasks_app.services.cli_binary import resolve_cli
from tasks_app.services.events import NewEvent, StreamOwnershipLost, append_events
from tasks_app.services.monitor import AttemptMonitor, StopCause
from tasks_app.services.sessions import cli_config_path, workspace_path

log = structlog.get_logger(__name__)
MAX_EVENTS_PER_INSERT = 500
CLI_PATH = "/usr/local/bin:/usr/bin:/bin"


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


def build_command(task: Task, *, budget: Decimal | None) -> CliCommand:
    session = task.session
    workspace = workspace_path(session)
    config_dir = cli_config_path(session)
    transcripts.restore_transcript(session=session, config_dir=config_dir, workspace=workspace)
    options = ClaudeOptions(
        cli=resolve_cli(),
        max_turns=task.max_turns,
        max_budget_usd=budget,
        permission_mode=settings.AGENT_PERMISSION_MODE or None,
        allowed_tools=tuple(settings.AGENT_ALLOWED_TOOLS),
        resume_session_id=session.cli_session_id or None,
    )
    extra = {"IS_SANDBOX": "1"} if settings.AGENT_PERMISSION_MODE == "bypassPermissions" else {}
    env = build_env(
        config_dir=config_dir,
        path=CLI_PATH,
        api_key=settings.ANTHROPIC_API_KEY or None,
        base_url=settings.ANTHROPIC_BASE_URL or None,
        oauth_token=settings.CLAUDE_CODE_OAUTH_TOKEN or None,
        max_api_retries=settings.AGENT_CLI_API_RETRIES,
        extra=extra,
    )
    return CliCommand(
        argv=build_argv(options),
        cwd=workspace,
        env=env,
        stdin=task.prompt.encode("utf-8"),
        secrets=tuple(known_secrets()),
    )


def run_limits(task: Task) -> RunLimits:
    return RunLimits(
        wall_timeout_s=float(task.timeout_s),
        idle_timeout_s=float(settings.AGENT_IDLE_TIMEOUT_S),
        max_output_bytes=settings.AGENT_MAX_OUTPUT_BYTES,
        # A Write tool call carrying a big file arrives as one line; it must fit.
        max_line_bytes=16 * 1_048_576,
        stop_grace_s=settings.AGENT_STOP_GRACE_S,
    )


@dataclass
class EventWriter:
    """Stores events as they arrive; the result waits for the finishing transaction."""

    task: Task
    attempt: int
    held_back: list[NewEvent] = field(default_factory=list)

    def write(self, events: list[CliEvent]) -> None:
        live: list[NewEvent] = []
        for event in events:
            new = NewEvent(event.kind.value, event.payload)
            # The result and the final status commit together, so a crash between them
            # can never leave a task with a result but no ending (or two results).
            if event.kind is EventKind.RESULT or self.held_back:
                self.held_back.append(new)
            else:
                live.append(new)
        for start in range(0, len(live), MAX_EVENTS_PER_INSERT):
            append_events(
                self.task,
                live[start : start + MAX_EVENTS_PER_INSERT],
                attempt=self.attempt,
                running_attempt=self.attempt,
            )


def record_pid(task: Task, attempt: int, pid: int) -> None:
    Task.objects.filter(pk=task.pk, status=TaskStatus.RUNNING, attempts=attempt).update(pid=pid)


def supervise(run: CliRun, writer: EventWriter, monitor: AttemptMonitor) -> StopCause | None:
    """Pump the CLI's batches into the writer until it ends; returns why we stopped it."""
    cause: StopCause | None = None
    for batch in run.batches():
        if batch and cause is not StopCause.LOST:
            try:
                writer.write(batch)
            except StreamOwnershipLost:
                cause = StopCause.LOST
                run.request_stop(StopReason.REQUESTED)
        if cause is None:
            cause = monitor.poll()
            if cause is not None:
                log.info("stopping_cli", cause=cause.value)
                run.request_stop(StopReason.REQUESTED)
    return cause


def execute_claimed_task(task: Task) -> TaskStatus | None:
    """Run the attempt `task` was just claimed for; returns the status it ended in."""
    attempt = task.attempts
    structlog.contextvars.bind_contextvars(task_id=task.pk, attempt=attempt, worker=task.worker)
    budget = effective_budget(task)
    if budget is not None and budget <= 0:
        summary = outcomes.refusal("Your daily budget was spent before this task could start.")
        return outcomes.finish_attempt(task, attempt=attempt, summary=summary, final_events=[])
    started = time.monotonic()
    writer = EventWriter(task, attempt)
    monitor = AttemptMonitor(task=task, attempt=attempt)
    try:
        command = build_command(task, budget=budget)
    except (OSError, ValueError) as exc:
        summary = outcomes.refusal(f"The task could not be prepared: {exc}.", transient=True)
        return outcomes.finish_attempt(task, attempt=attempt, summary=summary, final_events=[])
    with CliRun(command, run_limits(task)) as run:
        try:
            record_pid(task, attempt, run.start())
        except (CliStartError, OSError) as exc:
            summary = outcomes.refusal(f"The CLI could not be started: {exc}.", transient=True)
            return outcomes.finish_attempt(task, attempt=attempt, summary=summary, final_events=[])
        CLI_PROCESSES.inc()
        try:
            cause = supervise(run, writer, monitor)
        finally:
            CLI_PROCESSES.dec()
        outcome: RunOutcome = run.outcome
    if cause is StopCause.LOST:
        log.warning("attempt_lost_ownership")
        return None
    summary: RunSummary = summarize_run(outcome)
    if summary.cli_session_id:
        transcripts.save_transcript(
            session=task.session,
            config_dir=cli_config_path(task.session),
            cli_session_id=summary.cli_session_id,
            secrets=tuple(known_secrets()),
        )
    log.info(
        "attempt_finished",
        verdict=summary.verdict.value,
        stop_reason=outcome.stop_reason.value,
        exit_code=outcome.exit_code,
        lines=outcome.stdout_lines,
        seconds=round(time.monotonic() - started, 3),
    )
    return outcomes.finish_attempt(
        task,
        attempt=attempt,
        summary=summary,
        final_events=writer.held_back,
        exit_code=outcome.exit_code,
        handed_back=cause is StopCause.DRAIN and summary.verdict is not Verdict.SUCCEEDED,
        finished_at=timezone.now(),
    )
