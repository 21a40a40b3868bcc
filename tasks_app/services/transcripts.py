"""Carrying the CLI's conversation transcript with the session, so any worker can resume.

The CLI keeps a session's transcript under its config dir, on the machine that ran
it; we store a compressed copy in the database after every run and write it back
before a `--resume`, wherever the follow-up lands.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import structlog

from cli_exec.claude import find_transcript, transcript_dir
from cli_exec.redact import Redactor
from tasks_app.compiled_sql import update_matching
from tasks_app.models import AgentSession

log = structlog.get_logger(__name__)


def save_transcript(
    *, session: AgentSession, config_dir: Path, cli_session_id: str, secrets: tuple[str, ...] = ()
) -> None:
    path = find_transcript(config_dir, cli_session_id)
    if path is None:
        log.warning("transcript_missing", session_id=session.pk, cli_session_id=cli_session_id)
        update_matching(AgentSession, {"pk": session.pk}, {"cli_session_id": cli_session_id})
        return
    # The model may have echoed a secret; the stored copy must not keep it (the events
    # were redacted as they streamed, the CLI's own file was not).
    text = Redactor(secrets).redact_text(path.read_text("utf-8", errors="surrogateescape"))
    compressed = zlib.compress(text.encode("utf-8", errors="surrogateescape"), level=6)
    stored = {"cli_session_id": cli_session_id, "transcript": compressed}
    update_matching(AgentSession, {"pk": session.pk}, stored)
    session.cli_session_id = cli_session_id
    session.transcript = compressed


def restore_transcript(*, session: AgentSession, config_dir: Path, workspace: Path) -> None:
    """Write the stored transcript where the CLI looks for it before `--resume`."""
    if not session.cli_session_id or not session.transcript:
        return
    target = transcript_dir(config_dir, workspace) / f"{session.cli_session_id}.jsonl"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(zlib.decompress(bytes(session.transcript)))
