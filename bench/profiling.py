"""Sampling profiles of the processes under test (`python -m bench --profile web,worker`).

py-spy attaches by PID while a benchmark runs and writes collapsed stacks; `summarize`
turns them into the functions where time goes (own time and time including callees).
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

PY_SPY = Path(sys.executable).parent / "py-spy"
TARGETS = ("web", "worker")
STOP_TIMEOUT_S = 30.0


@contextlib.contextmanager
def py_spy(pid: int, output: Path, *, subprocesses: bool) -> Iterator[None]:
    """Sample `pid` (and its children) at 100 Hz until the block ends; raw output."""
    output.parent.mkdir(parents=True, exist_ok=True)
    argv = [str(PY_SPY), "record", "--pid", str(pid), "--format", "raw", "--output", str(output)]
    argv += ["--rate", "100", "--nonblocking", "--gil"]  # CPU: samples holding the GIL
    if subprocesses:
        argv.append("--subprocesses")
    log = output.with_suffix(".log").open("wb")
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        if output.exists():
            output.with_suffix(".txt").write_text(summarize(output))


def _function(frame: str) -> str:
    # "name (path/to/module.py:123)" → "name (path/to/module.py)"
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit(':', 1)[0]})" if where else name


def summarize(raw: Path, top: int = 25) -> str:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_function(f) for f in stack.split(";") if f]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for function in set(frames):
            inclusive[function] += count
    if not total:
        return "no samples\n"
    lines = [f"{total} samples (100 Hz, threads holding the GIL)", "", "own time:"]
    lines += [f"{100 * n / total:6.1f}%  {name}" for name, n in own.most_common(top)]
    lines += ["", "including callees:"]
    lines += [f"{100 * n / total:6.1f}%  {name}" for name, n in inclusive.most_common(top)]
    return "\n".join(lines) + "\n"
