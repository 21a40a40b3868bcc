"""The bench's reading of CPU time stolen by the host (what makes a run noisy)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.machine import CpuClock, steal_pct

STAT = "cpu  {user} 0 {system} {idle} 0 0 0 {steal} 40 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n"


def clock_from(tmp_path: Path, **ticks: int) -> CpuClock | None:
    stat = tmp_path / "stat"
    stat.write_text(STAT.format(**ticks))
    return CpuClock.read(stat)


def test_steal_is_its_share_of_all_cpu_time_between_readings_guests_not_counted_twice(
    tmp_path,
):
    before = clock_from(tmp_path, user=100, system=50, idle=800, steal=50)
    after = clock_from(tmp_path, user=400, system=150, idle=1100, steal=150)

    assert before == CpuClock(total=1000, steal=50)
    assert steal_pct(before, after) == pytest.approx(100 * 100 / 800)


@pytest.mark.parametrize("text", ["", "intr 1 2 3\n", "cpu 1 2 3\n"])
def test_an_unreadable_stat_gives_no_clock_and_no_share(tmp_path, text):
    stat = tmp_path / "stat"
    stat.write_text(text)

    assert CpuClock.read(stat) is None
    assert CpuClock.read(tmp_path / "missing") is None
    assert steal_pct(None, CpuClock(total=10, steal=1)) is None
    assert steal_pct(CpuClock(total=10, steal=1), CpuClock(total=10, steal=1)) is None


def test_this_machine_has_a_clock():
    clock = CpuClock.read()

    assert clock is not None
    assert 0 <= clock.steal <= clock.total
