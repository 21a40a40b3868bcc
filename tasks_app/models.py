"""Agentsite's data: sessions, tasks and their events, GitHub deliveries, API tokens."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from tasks_app.jsonsafe import PostgresSafeJSONEncoder


class Source(models.TextChoices):
    WEB = "web", "Web"
    API = "api", "API"
    GITHUB = "github", "GitHub"


class TaskStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    TIMED_OUT = "timed_out", "Timed out"
    CANCELLED = "cancelled", "Cancelled"
    DEAD_LETTER = "dead_letter", "Dead letter"

    @classmethod
    def terminal(cls) -> frozenset[TaskStatus]:
        return frozenset({cls.SUCCEEDED, cls.FAILED, cls.TIMED_OUT, cls.CANCELLED, cls.DEAD_LETTER})

    @classmethod
    def retryable(cls) -> frozenset[TaskStatus]:
        """Statuses from which a user may start a new attempt as a new task."""
        return frozenset({cls.FAILED, cls.TIMED_OUT, cls.CANCELLED, cls.DEAD_LETTER})


class AgentSession(models.Model):
    """One conversation with the agent: its workspace and the CLI's own session id."""

    # Megabytes in a long session: read only where they are used, never with the task.
    STORED_FILES = ("transcript", "workspace_bundle")

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="agent_sessions"
    )
    title = models.CharField(max_length=200, blank=True)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.WEB)
    workspace = models.CharField(max_length=500, blank=True)
    cli_session_id = models.CharField(max_length=64, blank=True)
    # The CLI's transcript travels with the session so --resume works on any worker.
    transcript = models.BinaryField(blank=True, default=b"", editable=False)
    github_repository = models.ForeignKey(
        "GitHubRepository", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    github_number = models.PositiveIntegerField(null=True, blank=True)
    # The session's git work (services.workspaces): with a repository, a branch pushed
    # there; without one, the history saved here as a bundle.
    base_branch = models.CharField(max_length=255, blank=True)
    branch = models.CharField(max_length=255, blank=True)
    head_commit = models.CharField(max_length=64, blank=True)
    pull_request_number = models.PositiveIntegerField(null=True, blank=True)
    pull_request_url = models.URLField(max_length=500, blank=True)
    # Why the worker will not push this session's work (a fork's pull request).
    push_refused = models.CharField(max_length=300, blank=True)
    workspace_bundle = models.BinaryField(null=True, blank=True, editable=False)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["owner", "-created"], name="session_owner_created")]
        constraints = [
            models.UniqueConstraint(
                fields=["github_repository", "github_number"],
                condition=models.Q(github_repository__isnull=False),
                name="one_session_per_github_thread",
            )
        ]

    def __str__(self) -> str:
        return self.title or f"Session {self.pk}"


class Task(models.Model):
    """One run request of the agent; its status only moves through services.lifecycle."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="agent_tasks"
    )
    session = models.ForeignKey(AgentSession, on_delete=models.CASCADE, related_name="tasks")
    prompt = models.TextField()
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.API)
    status = models.CharField(max_length=16, choices=TaskStatus.choices, default=TaskStatus.QUEUED)
    priority = models.SmallIntegerField(default=0)
    attempts = models.PositiveSmallIntegerField(default=0)
    max_attempts = models.PositiveSmallIntegerField()
    timeout_s = models.PositiveIntegerField()
    max_turns = models.PositiveIntegerField(null=True, blank=True)
    max_budget_usd = models.DecimalField(max_digits=10, decimal_places=4, null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # A retry waits for its backoff; the claim query skips tasks not yet due.
    run_after = models.DateTimeField(null=True, blank=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=255, blank=True)
    pid = models.IntegerField(null=True, blank=True)
    exit_code = models.IntegerField(null=True, blank=True)
    result_text = models.TextField(blank=True)
    error = models.TextField(blank=True)
    cost_usd = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    input_tokens = models.PositiveIntegerField(null=True, blank=True)
    output_tokens = models.PositiveIntegerField(null=True, blank=True)
    num_turns = models.PositiveIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    retry_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="retries"
    )
    # Highest event seq handed out; bumped in the same transaction as the insert, so
    # seqs stay gapless and unique even when two writers race.
    last_seq = models.PositiveIntegerField(default=0)
    # What the attempt did to the workspace (services.workspaces); the diff is TaskDiff.
    base_commit = models.CharField(max_length=64, blank=True)
    head_commit = models.CharField(max_length=64, blank=True)
    branch = models.CharField(max_length=255, blank=True)
    pull_request_url = models.URLField(max_length=500, blank=True)
    files_changed = models.PositiveIntegerField(null=True, blank=True)
    insertions = models.PositiveIntegerField(null=True, blank=True)
    deletions = models.PositiveIntegerField(null=True, blank=True)
    changed_files = models.JSONField(default=list, blank=True)  # [{path, insertions, deletions}]
    commits = models.JSONField(default=list, blank=True)  # [[sha, subject]], oldest first
    workspace_note = models.CharField(max_length=500, blank=True)
    # Event retention (services.retention): when the stream's text deltas were dropped
    # and how many (the completed texts, tool calls and statuses stay).
    events_compacted_at = models.DateTimeField(null=True, blank=True)
    events_dropped = models.PositiveIntegerField(default=0)
    # The creating request's trace (W3C traceparent): every attempt continues it.
    trace_parent = models.CharField(max_length=64, blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["finished_at"],
                condition=models.Q(events_compacted_at__isnull=True),
                name="task_finished_uncompacted",
            ),
            models.Index(fields=["owner", "status", "-created"], name="task_owner_status_created"),
            models.Index(fields=["status", "-created"], name="task_status_created"),
            models.Index(fields=["session", "-created"], name="task_session_created"),
            models.Index(fields=["owner", "-created"], name="task_owner_created"),
        ]

    def __str__(self) -> str:
        return f"Task {self.pk} ({self.status})"

    @property
    def is_terminal(self) -> bool:
        return self.status in TaskStatus.terminal()


class TaskDiff(models.Model):
    """An attempt's unified diff, capped; kept apart so task lists never load it."""

    task = models.OneToOneField(
        Task, on_delete=models.CASCADE, primary_key=True, related_name="diff"
    )
    text = models.TextField(blank=True)
    truncated = models.BooleanField(default=False)

    def __str__(self) -> str:
        return f"diff of task {self.task_id}"


class TaskEvent(models.Model):
    """One event of a task's stream, numbered 1, 2, 3 … per task without gaps."""

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="events")
    seq = models.PositiveIntegerField()
    attempt = models.PositiveSmallIntegerField(default=0)
    kind = models.CharField(max_length=32)
    payload = models.JSONField(default=dict, encoder=PostgresSafeJSONEncoder)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["task", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["task", "seq"], name="task_event_seq_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.task_id}#{self.seq} {self.kind}"


class DeliveryOutcome(models.TextChoices):
    ACCEPTED = "accepted", "Accepted"
    IGNORED = "ignored", "Ignored"
    DUPLICATE = "duplicate", "Duplicate"
    REJECTED = "rejected", "Rejected"
    FAILED = "failed", "Failed"


class GitHubRepository(models.Model):
    full_name = models.CharField(max_length=200, unique=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="github_repositories"
    )
    enabled = models.BooleanField(default=True)
    trigger = models.CharField(
        max_length=64, blank=True, help_text="Overrides AGENT_GITHUB_TRIGGER for this repository."
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "GitHub repository"
        verbose_name_plural = "GitHub repositories"

    def __str__(self) -> str:
        return self.full_name


class WebhookDelivery(models.Model):
    # Unverified requests are recorded too, but must not squat on a real delivery's id.
    delivery_id = models.CharField(max_length=100)
    event = models.CharField(max_length=64, blank=True)
    action = models.CharField(max_length=64, blank=True)
    repository = models.CharField(max_length=200, blank=True)
    sender = models.CharField(max_length=100, blank=True)
    outcome = models.CharField(max_length=16, choices=DeliveryOutcome.choices)
    reason = models.CharField(max_length=200, blank=True)
    payload = models.JSONField(null=True, blank=True, encoder=PostgresSafeJSONEncoder)
    task = models.ForeignKey(
        Task, null=True, blank=True, on_delete=models.SET_NULL, related_name="deliveries"
    )
    ack_comment_id = models.BigIntegerField(null=True, blank=True)
    duplicates = models.PositiveIntegerField(default=0)
    received = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "webhook deliveries"
        constraints = [
            models.UniqueConstraint(
                fields=["delivery_id"],
                condition=~models.Q(outcome="rejected"),
                name="one_verified_delivery_per_id",
            )
        ]
        indexes = [
            models.Index(fields=["outcome", "-received"], name="delivery_outcome_received"),
            models.Index(fields=["repository", "-received"], name="delivery_repo_received"),
        ]

    def __str__(self) -> str:
        return f"{self.delivery_id} {self.event}.{self.action} {self.outcome}"


class ApiToken(models.Model):
    """A REST/WebSocket credential; only its SHA-256 digest is stored."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=16, db_index=True, editable=False)
    digest = models.CharField(max_length=64, unique=True, editable=False)
    created = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"


class DeadLetter(models.Model):
    """A job that ran out of attempts, stored by the dead_letter queue's consumer."""

    # One record per failure, however often its message is delivered.
    key = models.CharField(max_length=200, unique=True)
    job = models.CharField(max_length=200)
    args = models.JSONField(default=list, encoder=PostgresSafeJSONEncoder)
    kwargs = models.JSONField(default=dict, encoder=PostgresSafeJSONEncoder)
    reason = models.TextField()
    task = models.ForeignKey(
        Task, null=True, blank=True, on_delete=models.SET_NULL, related_name="dead_letters"
    )
    delivery = models.ForeignKey(
        WebhookDelivery, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)
    requeued_at = models.DateTimeField(null=True, blank=True)
    requeued_as = models.ForeignKey(
        Task, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        indexes = [models.Index(fields=["-created"], name="dead_letter_created")]

    def __str__(self) -> str:
        return f"{self.job} ({self.created:%Y-%m-%d %H:%M})"
