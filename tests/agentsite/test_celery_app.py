"""The Celery app's per-process parts."""

import threading

from agentsite.celery import app


def test_the_result_backend_is_one_per_process_not_one_per_thread():
    """Every send_task asks for it, and each ASGI request runs in a thread of its own."""
    seen = []
    for _ in range(3):
        thread = threading.Thread(target=lambda: seen.append(app.backend))
        thread.start()
        thread.join()
    assert seen[0] is seen[1] is seen[2]
