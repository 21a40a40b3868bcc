"""The hub's thread gives its database connection back after a batch that wrote."""

import threading

import pytest
from django.db import connection, transaction

from tasks_app.models import Task
from tasks_app.services.execution import ConnectionHandBack

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_connection_written_with_is_handed_back():
    hand_back_connection = ConnectionHandBack()
    Task.objects.exists()
    assert connection.connection is not None
    hand_back_connection()
    assert connection.connection is None
    hand_back_connection()  # nothing held: nothing to do
    assert connection.connection is None
    assert Task.objects.count() == 0  # the next write takes one from the pool again


def test_a_connection_inside_a_transaction_is_never_handed_back():
    hand_back_connection = ConnectionHandBack()
    with transaction.atomic():
        Task.objects.exists()
        hand_back_connection()
        assert connection.connection is not None


def test_each_calling_thread_hands_back_its_own_connection():
    # Made in the job's thread, called from the hub's, and from the job's again when the
    # hub hands a heavy run back.
    hand_back_connection = ConnectionHandBack()
    held_there: list[bool] = []

    def in_another_thread() -> None:
        Task.objects.exists()
        hand_back_connection()
        held_there.append(connection.connection is not None)
        connection.close()

    thread = threading.Thread(target=in_another_thread)
    thread.start()
    thread.join()
    assert held_there == [False]
    Task.objects.exists()
    hand_back_connection()
    assert connection.connection is None
