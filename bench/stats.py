"""Summaries of raw samples: percentiles by linear interpolation, counts, throughput."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any


def percentile(samples: Sequence[float], pct: float) -> float:
    """The pct-th percentile (0-100) with linear interpolation between ranks."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = (len(ordered) - 1) * pct / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Summary:
    """Latencies in milliseconds."""

    count: int
    p50: float
    p95: float
    p99: float
    min: float
    max: float
    mean: float

    def to_json(self) -> dict[str, Any]:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def summarize_ms(seconds: Sequence[float]) -> Summary:
    """Summary of durations given in seconds, reported in milliseconds."""
    ms = [s * 1000.0 for s in seconds]
    if not ms:
        nan = math.nan
        return Summary(0, nan, nan, nan, nan, nan, nan)
    return Summary(
        count=len(ms),
        p50=percentile(ms, 50),
        p95=percentile(ms, 95),
        p99=percentile(ms, 99),
        min=min(ms),
        max=max(ms),
        mean=sum(ms) / len(ms),
    )


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)
