"""A threads slot gives its database connection back between writes; prefork keeps it."""

import pytest
from django.db import connection, transaction
from django.test import override_settings

from tasks_app.models import Task
from tasks_app.services.execution import ConnectionHandBack

pytestmark = pytest.mark.django_db(transaction=True)


@override_settings(AGENT_WORKER_POOL="threads")
def test_a_threads_slot_hands_back_the_connection_it_wrote_with():
    hand_back_connection = ConnectionHandBack()
    Task.objects.exists()
    assert connection.connection is not None
    hand_back_connection()
    assert connection.connection is None
    hand_back_connection()  # nothing held: nothing to do
    assert connection.connection is None
    assert Task.objects.count() == 0  # the next write takes one from the pool again


@override_settings(AGENT_WORKER_POOL="threads")
def test_a_connection_inside_a_transaction_is_never_handed_back():
    hand_back_connection = ConnectionHandBack()
    with transaction.atomic():
        Task.objects.exists()
        hand_back_connection()
        assert connection.connection is not None


@override_settings(AGENT_WORKER_POOL="prefork")
def test_a_prefork_slot_keeps_its_connection():
    hand_back_connection = ConnectionHandBack()
    Task.objects.exists()
    hand_back_connection()
    assert connection.connection is not None
