"""The one table `python -m bench` prints, and bench/results.json."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Figure:
    """One row: a measured value beside its same-run baseline and its goal."""

    name: str
    value: float
    baseline: float | None
    unit: str
    goal: str = ""
    met: bool | None = None  # None: the row has no goal of its own
    ratio: float | None = None  # value/baseline unless the figure defines it otherwise
    text: str = ""  # shown instead of the value when a number says too little

    def shown_ratio(self) -> float | None:
        if self.ratio is not None:
            return self.ratio
        if self.baseline is None or not self.baseline or math.isnan(self.value):
            return None
        return self.value / self.baseline


@dataclass
class BenchResult:
    """What one benchmark module returns: its rows and its raw summary numbers."""

    name: str
    figures: list[Figure]
    raw: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    loadavg: str = ""
    steal_pct: float | None = None
    error: str = ""


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if math.isnan(value):
        return "n/a"
    digits = 0 if unit in ("", "events") or abs(value) >= 1000 else 1
    if unit == "ms" and abs(value) < 10:
        digits = 2
    if unit == "s":
        digits = 3
    return f"{value:,.{digits}f} {unit}".strip()


def _row(figure: Figure) -> list[str]:
    ratio = figure.shown_ratio()
    met = "-" if figure.met is None else ("yes" if figure.met else "NO")
    return [
        figure.name,
        figure.text or _number(figure.value, figure.unit),
        _number(figure.baseline, figure.unit),
        "-" if ratio is None or math.isnan(ratio) else f"{ratio:.2f}x",
        figure.goal or "-",
        met,
    ]


def percent(value: float | None) -> str:
    """A share for the table's text; `?` when it could not be read."""
    return "?" if value is None else f"{value:.1f} %"


def render_table(machine: dict[str, Any], results: Sequence[BenchResult]) -> str:
    header = ["figure", "value", "baseline", "ratio", "goal", "met?"]
    rows = [_row(f) for r in results for f in r.figures]
    rows += [[f"{r.name}: FAILED", r.error[:80], "", "", "", "NO"] for r in results if r.error]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    lines = [
        f"Agentsite bench ({machine['mode']}), {machine['started_at']}, commit {machine['commit']}",
        f"machine: {machine['cpu_count']} CPU x {machine['cpu_model']}, "
        f"{machine['memory_gib']:.1f} GiB RAM, {machine['kernel']}, Python {machine['python']}",
        f"load average: start {machine['loadavg_start']}, end {machine.get('loadavg_end', '?')}; "
        f"CPU stolen by the host: {percent(machine.get('steal_pct'))} of the run",
        line(header),
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
        *(line(row) for row in rows),
    ]
    return "\n".join(lines)


def write_json(path: Path, machine: dict[str, Any], results: Sequence[BenchResult]) -> None:
    document = {
        "machine": machine,
        "figures": [
            {**asdict(f), "ratio": f.shown_ratio(), "benchmark": r.name}
            for r in results
            for f in r.figures
        ],
        "benchmarks": {
            r.name: {
                "seconds": round(r.seconds, 1),
                "loadavg_after": r.loadavg,
                "steal_pct": r.steal_pct,
                "error": r.error,
            }
            | r.raw
            for r in results
        },
    }
    plain = json.loads(json.dumps(document, default=_jsonable))
    path.write_text(json.dumps(_finite(plain), indent=2, allow_nan=False) + "\n")


def _finite(value: Any) -> Any:
    """NaN (a figure with no samples) is not JSON; it becomes null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _jsonable(value: Any) -> Any:
    if hasattr(value, "to_json"):
        return value.to_json()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
