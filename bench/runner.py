"""Runner throughput: a CLI printing N stream-json lines as fast as it can.

Measured: wall time from `CliRun.start()` to the end of `batches()` (every line parsed,
redacted and yielded as events; the process reaped). Baseline: the same CLI and prompt
with stdout to /dev/null (`fake_cli > /dev/null`), from spawn to exit. Beside it, for
scale, the same CLI piped into `cat > /dev/null`: what writing into any pipe reader costs
the CLI (each write copies, and wakes a reader that keeps up). Medians of alternating
repeats.

The CLI's own CPU time (user and system, from its rusage) is kept for the /dev/null and
runner modes: on this kind of virtual machine the same CLI run has taken 0.40 s in one
second and 0.74 s a few seconds later, so a ratio of medians needs many repeats, and the
CPU row shows whether the runner made the CLI itself slower.
"""

from __future__ import annotations

import resource
import subprocess
import tempfile
import time
from pathlib import Path

from bench import fake_cli
from bench.context import Context
from bench.report import BenchResult, Figure
from bench.stats import median
from cli_exec.claude import ClaudeOptions, build_argv
from cli_exec.runner import CliCommand, CliRun, RunLimits

NAME = "runner"
NEEDS_STACK = False
GOAL_RATIO = 1.05
# What the worker passes: the secret key, the API key; each chunk is redacted for them.
SECRETS = ("bench-secret-key-0123456789abcdefghijklmnop", "sk-ant-bench-0123456789abcdef")


def cli_argv(cli: Path) -> list[str]:
    return build_argv(ClaudeOptions(cli=str(cli), max_turns=30, permission_mode="acceptEdits"))


def children_cpu() -> float:
    """CPU seconds of every child this process has reaped so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def to_devnull(cli: Path, prompt: bytes) -> float:
    started = time.perf_counter()
    subprocess.run(
        cli_argv(cli),
        input=prompt,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
    )
    return time.perf_counter() - started


def to_cat(cli: Path, prompt: bytes) -> float:
    started = time.perf_counter()
    cat = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)  # noqa: S607 - a bench baseline
    try:
        subprocess.run(
            cli_argv(cli), input=prompt, stdout=cat.stdin, stderr=subprocess.DEVNULL, check=True
        )
    finally:
        if cat.stdin is not None:
            cat.stdin.close()
        cat.wait()
    return time.perf_counter() - started


def through_runner(cli: Path, prompt: bytes, workdir: Path) -> tuple[float, int, int]:
    """(seconds, events yielded, stdout lines) for one CliRun consuming every batch."""
    command = CliCommand(
        argv=cli_argv(cli),
        cwd=workdir,
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"},
        stdin=prompt,
        secrets=SECRETS,
    )
    # The limits the worker gives a task (services.execution.run_limits).
    limits = RunLimits(
        wall_timeout_s=300, idle_timeout_s=60, max_line_bytes=16 * 1_048_576, stop_grace_s=1.5
    )
    events = 0
    started = time.perf_counter()
    with CliRun(command, limits) as run:
        run.start()
        for batch in run.batches():
            events += len(batch)
    elapsed = time.perf_counter() - started
    return elapsed, events, run.outcome.stdout_lines


def run(ctx: Context) -> BenchResult:
    lines = ctx.sizes.runner_lines
    prompt = fake_cli.prompt(lines=lines).encode()
    devnull: list[float] = []
    piped: list[float] = []
    runner: list[float] = []
    devnull_cli_cpu: list[float] = []
    runner_cli_cpu: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-runner-") as tmp:
        workdir = Path(tmp)
        # Warm-up: page cache, the interpreter's first start.
        to_devnull(ctx.fake_cli, fake_cli.prompt(lines=1000).encode())
        through_runner(ctx.fake_cli, fake_cli.prompt(lines=1000).encode(), workdir)
        for _ in range(ctx.sizes.runner_repeats):
            cpu_before = children_cpu()
            devnull.append(to_devnull(ctx.fake_cli, prompt))
            devnull_cli_cpu.append(children_cpu() - cpu_before)
            piped.append(to_cat(ctx.fake_cli, prompt))
            cpu_before = children_cpu()
            seconds, events, stdout_lines = through_runner(ctx.fake_cli, prompt, workdir)
            runner_cli_cpu.append(children_cpu() - cpu_before)
            runner.append(seconds)
            if events != lines + 2 or stdout_lines < lines + 2:
                raise RuntimeError(f"CliRun yielded {events} events for {lines + 2} lines")
    value, baseline = median(runner), median(devnull)
    ratio = value / baseline
    figures = [
        Figure(
            name=f"runner: {lines:,} lines via CliRun, wall",
            value=value,
            baseline=baseline,
            unit="s",
            goal=f"<= {GOAL_RATIO}x",
            met=ratio <= GOAL_RATIO,
        ),
        Figure(
            name="runner: the same CLI piped into cat > /dev/null, wall (for scale)",
            value=median(piped),
            baseline=baseline,
            unit="s",
        ),
        Figure(
            name="runner: the CLI's own CPU, piped to CliRun (baseline: to /dev/null)",
            value=median(runner_cli_cpu),
            baseline=median(devnull_cli_cpu),
            unit="s",
        ),
    ]
    raw = {
        "lines": lines,
        "runner_s": runner,
        "devnull_s": devnull,
        "cat_s": piped,
        "runner_cli_cpu_s": runner_cli_cpu,
        "devnull_cli_cpu_s": devnull_cli_cpu,
        "runner_lines_per_s": lines / value,
        "devnull_lines_per_s": lines / baseline,
    }
    return BenchResult(NAME, figures, raw)
