"""`python -m bench [--quick] [--only webhook,runner]`: run the benchmarks against a
freshly started stack, print one table and write bench/results.json."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import os
import signal
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import FrameType, ModuleType

from bench.context import Context, Sizes
from bench.machine import CpuClock, describe, loadavg, steal_pct
from bench.profiling import TARGETS
from bench.report import BenchResult, percent, render_table, write_json
from bench.stack import (
    Stack,
    StackConfig,
    environment,
    install_fake_cli,
    pick_port,
    reset_run_dir,
)

BENCHMARKS = (
    "webhook",
    "start",
    "streaming",
    "fanout",
    "throughput",
    "memory",
    "runner",
    "sandbox",
    "workspaces",
    "tracing",
    "channel_layer",
    "slots",
    "flood",
)
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results.json"
BENCH_USER = "bench"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller counts, for development")
    parser.add_argument(
        "--only", default="", help=f"comma-separated subset of: {', '.join(BENCHMARKS)}"
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="results JSON")
    parser.add_argument(
        "--max-minutes", type=float, default=20.0, help="abort (and stop everything) after this"
    )
    parser.add_argument(
        "--profile",
        default="",
        help="sample these processes with py-spy: web,worker (var/bench/profiles/)",
    )
    args = parser.parse_args(argv)
    args.profile = frozenset(name for name in args.profile.split(",") if name)
    if args.profile - set(TARGETS):
        parser.error(f"--profile takes {', '.join(TARGETS)}")
    args.selected = [name for name in args.only.split(",") if name] or list(BENCHMARKS)
    unknown = sorted(set(args.selected) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    return args


def run_one(module: ModuleType, ctx: Context) -> BenchResult:
    name = module.NAME
    print(f"[bench] {name} ... (load {loadavg()})", file=sys.stderr, flush=True)
    started, clock = time.monotonic(), CpuClock.read()
    try:
        result: BenchResult = module.run(ctx)
    except Exception as exc:  # one failed benchmark must not hide the others' figures
        traceback.print_exc()
        result = BenchResult(name, [], error=f"{type(exc).__name__}: {exc}")
    if ctx.stack is not None:
        from bench import db

        # Nothing a benchmark left behind may be claimed by the next one's worker.
        left = db.settle()
        if left:
            print(f"[bench] {name}: cancelled {left} unfinished tasks", file=sys.stderr)
    result.seconds = time.monotonic() - started
    result.loadavg = loadavg()
    result.steal_pct = steal_pct(clock, CpuClock.read())
    print(
        f"[bench] {name} done in {result.seconds:.0f} s "
        f"(CPU stolen by the host: {percent(result.steal_pct)})",
        file=sys.stderr,
        flush=True,
    )
    return result


class BenchAborted(BaseException):
    """Out of time or terminated: not a benchmark's failure, so nothing may catch it."""


def _abort(signum: int, _frame: FrameType | None) -> None:
    # Raised in the main thread, so every context manager stops its processes by PID.
    raise BenchAborted(f"bench aborted by {signal.Signals(signum).name}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = Sizes.quick() if args.quick else Sizes()
    machine = describe("quick" if args.quick else "default")
    clock = CpuClock.read()
    config = StackConfig.from_environ()
    github_port = pick_port()
    env = environment(config, github_port)
    reset_run_dir(config)
    # The bench process reads and sets up data with the very settings the servers use,
    # but keeps its own metrics files out of what web serves.
    os.environ.update(env)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(config.run_dir / "prometheus-bench")
    import django

    django.setup()
    from bench import db

    fake_cli = install_fake_cli(config.fake_cli)
    scratch = config.scratch
    modules = [importlib.import_module(f"bench.{name}") for name in args.selected]
    results: list[BenchResult] = []
    signal.signal(signal.SIGTERM, _abort)
    signal.signal(signal.SIGALRM, _abort)
    with contextlib.ExitStack() as running:
        ctx = Context(sizes=sizes, fake_cli=fake_cli, scratch=scratch)
        signal.alarm(int(args.max_minutes * 60))
        try:
            if any(module.NEEDS_STACK for module in modules):
                stack = running.enter_context(Stack(config, env, github_port, args.profile))
                token = db.create_user_token(BENCH_USER)
                ctx = Context(sizes, fake_cli, scratch, stack, token)
            results = [run_one(module, ctx) for module in modules]
        finally:
            signal.alarm(0)
    machine["loadavg_end"] = loadavg()
    machine["steal_pct"] = steal_pct(clock, CpuClock.read())
    machine["sizes"] = dataclasses.asdict(sizes)
    print(render_table(machine, results))
    write_json(args.output, machine, results)
    print(f"[bench] wrote {args.output}", file=sys.stderr)
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
