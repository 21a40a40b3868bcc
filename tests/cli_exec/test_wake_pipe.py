"""The wake-up pipe a run's loop and the run hub wait on beside their other descriptors."""

from __future__ import annotations

import os
import selectors
import threading

import pytest

from cli_exec._pipes import WakePipe


@pytest.fixture
def wake_pipe():
    pipe = WakePipe()
    yield pipe
    pipe.close()


def readable(pipe: WakePipe) -> bool:
    with selectors.DefaultSelector() as selector:
        selector.register(pipe.read_end, selectors.EVENT_READ)
        return bool(selector.select(0))


def test_a_wake_from_another_thread_ends_a_wait_and_a_drain_rearms_it(wake_pipe):
    assert not readable(wake_pipe)
    with selectors.DefaultSelector() as selector:
        selector.register(wake_pipe.read_end, selectors.EVENT_READ)
        waker = threading.Timer(0.05, wake_pipe.wake)
        waker.start()
        try:
            assert selector.select(30)  # returns on the wake, not the timeout
        finally:
            waker.join()
    wake_pipe.drain()
    assert not readable(wake_pipe)


def test_wakes_never_block_the_waker_however_many_are_pending(wake_pipe):
    # More wake-ups than a pipe holds (64 KiB): the extra ones are already pending.
    for _ in range(100_000):
        wake_pipe.wake()
    wake_pipe.drain()  # all of them, not just a first read's worth
    assert not readable(wake_pipe)


def test_a_closed_pipe_closes_both_ends_and_ignores_late_wakes(wake_pipe):
    read_end = wake_pipe.read_end
    wake_pipe.close()
    with pytest.raises(OSError):
        os.fstat(read_end)
    wake_pipe.wake()  # another thread may still wake a run that has just ended
    wake_pipe.close()  # and closing twice closes nothing of anyone else's


def test_a_forked_child_closes_it_even_if_the_lock_was_held_at_the_fork():
    pipe = WakePipe()
    read_end = pipe.read_end
    pipe._lock.acquire()  # as if a thread that is not in the child held it at the fork
    pipe.close_in_forked_child()
    with pytest.raises(OSError):
        os.fstat(read_end)
