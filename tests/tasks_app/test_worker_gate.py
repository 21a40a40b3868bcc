"""The worker's CLI gate acts on what its consumer does, not on what it last asked for."""

from types import SimpleNamespace
from unittest import mock

from tasks_app import worker
from tasks_app.services.dispatch import AGENT_QUEUE
from tests.live import wait_until


def gate_with(consume_from: set[str]) -> tuple[worker.CliGate, mock.Mock]:
    control = mock.Mock()
    app = SimpleNamespace(amqp=SimpleNamespace(queues=SimpleNamespace(consume_from=consume_from)))
    app.control = control
    consumer = SimpleNamespace(app=app, hostname="w@test")
    gate = worker.CliGate(consumer, consuming=True, interval_s=0.01)
    return gate, control


def test_a_queue_change_lost_with_the_broker_is_asked_for_again():
    # The gate once asked for the agent queue, but the consumer (reconnecting to the
    # broker meanwhile) never got the message: it does not consume it.
    gate, control = gate_with(consume_from={"celery"})
    with mock.patch.object(worker, "agent_ready", return_value=True):
        gate.start()
        try:
            wait_until(lambda: control.add_consumer.call_count >= 2, 10, "the request resent")
        finally:
            gate.stopped.set()
            gate.join(5)
    control.add_consumer.assert_called_with(AGENT_QUEUE, destination=["w@test"], reply=False)
    control.cancel_consumer.assert_not_called()


def test_a_consumed_queue_with_a_working_cli_is_left_alone():
    gate, control = gate_with(consume_from={"celery", AGENT_QUEUE})
    checks = []
    with mock.patch.object(worker, "agent_ready", side_effect=lambda _: checks.append(1) or True):
        gate.start()
        try:
            wait_until(lambda: len(checks) >= 3, 10, "three gate rounds")
        finally:
            gate.stopped.set()
            gate.join(5)
    control.add_consumer.assert_not_called()
    control.cancel_consumer.assert_not_called()
