"""The soak's picture: memory and p99 latencies over time, worker kills marked."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def draw(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display: render straight to the file
    import matplotlib.pyplot as plt

    memory = report["memory"]
    windows = report["p99_by_minute"]
    kills = [kill["at_min"] for kill in report["kills"]]
    figure, (rss, latency) = plt.subplots(2, 1, figsize=(11, 8), sharex=True)
    minutes = [sample["at_min"] for sample in memory]
    rss.plot(minutes, [s["web_mib"] for s in memory], label="web (uvicorn)")
    rss.plot(minutes, [s["workers_mib"] for s in memory], label="workers (main + pool, all)")
    rss.set_ylabel("RSS, MiB")
    rss.set_ylim(bottom=0)
    at = [w["minute"] + 0.5 for w in windows]
    for key, label in (
        ("post_ms", "API POST answered"),
        ("wait_ms", "queued → running"),
        ("ws_lag_ms", "CLI line → WebSocket client"),
    ):
        points = [(x, w[key]) for x, w in zip(at, windows, strict=True) if w[key] is not None]
        if points:
            latency.plot(*zip(*points, strict=True), marker="o", markersize=3, label=label)
    latency.set_yscale("log")
    latency.set_ylabel("p99 per minute, ms")
    latency.set_xlabel("minutes since start")
    for axis in (rss, latency):
        for minute in kills:
            axis.axvline(minute, color="red", linestyle="--", linewidth=0.8)
        axis.grid(alpha=0.3)
        axis.legend(loc="upper left", fontsize=8)
    totals = report["totals"]
    figure.suptitle(
        f"soak: {totals['submitted']} tasks in {report['plan']['minutes']:g} min, "
        f"{len(kills)} worker kills (red), {report['plan']['ws_clients']} WebSocket clients; "
        f"lost {totals['lost']}, double finishes {totals['double_finishes']}, "
        f"orphans {totals['orphans']}"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
