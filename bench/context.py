"""What every benchmark receives: sizes for this mode, the stack, the bench user."""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.stack import Services, Stack


@dataclass(frozen=True)
class Sizes:
    """Bounded counts; `quick` shrinks them for development, never the timeouts."""

    webhook_concurrency: int = 100
    webhook_bursts: int = 10
    webhook_warmup_bursts: int = 2
    start_samples: int = 50
    start_warmup: int = 5
    stream_lines_single: int = 200
    stream_interval_single_ms: float = 20.0
    streams_multi: int = 50
    stream_lines_multi: int = 40
    stream_interval_multi_ms: float = 50.0
    fanout_clients: int = 500
    fanout_lines: int = 20
    fanout_interval_ms: float = 50.0
    throughput_tasks: int = 500
    throughput_warmup: int = 20
    throughput_concurrency: int = 4
    runner_lines: int = 100_000
    runner_repeats: int = 15
    rss_warmup: int = 50
    rss_checkpoints: tuple[int, int] = (100, 1000)
    gateway_streams: int = 4
    gateway_deltas: int = 150
    workspace_files: int = 20_000
    workspace_commits: int = 300
    slots_compared: int = 50
    slots_many: int = 200
    slots_lines: int = 40
    slots_interval_ms: float = 200.0
    flood_streams: int = 4
    flood_lines: int = 100
    flood_interval_ms: float = 50.0

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            webhook_bursts=3,
            webhook_warmup_bursts=1,
            start_samples=15,
            start_warmup=3,
            stream_lines_single=60,
            streams_multi=10,
            stream_lines_multi=20,
            fanout_clients=100,
            fanout_lines=10,
            throughput_tasks=100,
            throughput_warmup=8,
            runner_lines=20_000,
            runner_repeats=2,
            rss_warmup=10,
            rss_checkpoints=(20, 200),
            gateway_streams=2,
            gateway_deltas=60,
            workspace_files=5_000,
            workspace_commits=50,
            slots_compared=8,
            slots_many=32,
            slots_lines=20,
            flood_lines=60,
        )


@dataclass(frozen=True)
class Context:
    sizes: Sizes
    fake_cli: Path
    scratch: Path  # files the fake CLIs wait for
    stack: Stack | None = None
    token: str = ""

    def services(
        self,
        name: str,
        concurrency: int,
        worker_env: dict[str, str] | None = None,
        web_processes: int = 1,
        env: dict[str, str] | None = None,
        worker_processes: int | None = None,
    ) -> AbstractContextManager[Services]:
        """A fresh web server and worker for one benchmark (see Stack.services)."""
        if self.stack is None:
            raise RuntimeError("this benchmark needs the stack")
        return self.stack.services(
            name, concurrency, worker_env, web_processes, env, worker_processes
        )
