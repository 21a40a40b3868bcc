"""Concurrency in tests: threads racing against the real database, all released at the
same instant; a forked child, as a prefork pool process is forked."""

from __future__ import annotations

import os
import threading
import traceback
from collections.abc import Callable
from typing import TypeVar

from django.db import connection

T = TypeVar("T")


def race(workers: int, action: Callable[[int], T]) -> list[T]:
    """Run `action(i)` in `workers` threads released together; results in thread order.

    Each thread has its own database connection, closed when it ends; an exception in
    any thread is raised here.
    """
    barrier = threading.Barrier(workers)
    results: list[T | None] = [None] * workers
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = action(i)
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results  # type: ignore[return-value]


def in_forked_child(report: Callable[[], bytes]) -> bytes:
    """What `report()` returns in a forked child. The child leaves at once whatever
    happens in it (it must never go on as a second test run) and is reaped here; a
    child that failed raises."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child only reports and leaves
        try:
            os.close(read_end)
            os.write(write_end, report())
        except BaseException:
            traceback.print_exc()
            os._exit(1)
        os._exit(0)
    os.close(write_end)
    try:
        with os.fdopen(read_end, "rb") as pipe:
            answer = pipe.read()
    finally:
        _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"the forked child failed (exit {os.waitstatus_to_exitcode(status)})")
    return answer
