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


def test_the_connection_is_the_one_of_the_thread_that_first_calls():
    hand_back_connection = ConnectionHandBack()  # made here, called from the hub's thread
    held_there: list[bool] = []

    def in_another_thread() -> None:
        Task.objects.exists()
        hand_back_connection()
        held_there.append(connection.connection is not None)
        connection.close()

    Task.objects.exists()
    thread = threading.Thread(target=in_another_thread)
    thread.start()
    thread.join()
    assert held_there == [False]
    assert connection.connection is not None  # this thread's own was not touched
