"""The per-run model gateway, through its real unix socket, in front of the fake Messages API."""

from __future__ import annotations

import json
import re
import socket
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from cli_exec.sandbox.egress import EgressPolicy
from cli_exec.sandbox.gateway import MAX_REQUEST_BYTES, ModelCredential
from cli_exec.sandbox.network import MODEL_SOCKET, RunNetwork, SandboxNetwork
from cli_exec.tls import client_tls
from tests.fakes.anthropic_api import FakeAnthropic, Hang, Text
from tests.live import free_port

REAL_KEY = "sk-ant-real-key-held-by-the-worker"
REAL_OAUTH = "sk-ant-oat-real-oauth-token"
PATH = "/v1/messages?beta=true"


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as fake:
        yield fake


@pytest.fixture
def open_gateway(
    network: SandboxNetwork, run_dir: Path, fake: FakeAnthropic
) -> Iterator[Callable[..., RunNetwork]]:
    runs: list[RunNetwork] = []

    def open_run(
        credential: ModelCredential = ModelCredential(api_key=REAL_KEY),  # noqa: B008
        upstream: str | None = None,
    ) -> RunNetwork:
        run = network.open_run(
            run_dir=run_dir,
            upstream=upstream or fake.base_url,
            credential=credential,
            policy=EgressPolicy(()),
            label="gateway-test",
        )
        runs.append(run)
        return run

    yield open_run
    for run in runs:
        network.close_run(run)


def gateway_client(run_dir: Path) -> httpx.Client:
    transport = httpx.HTTPTransport(uds=str(run_dir / MODEL_SOCKET))
    return httpx.Client(transport=transport, base_url="http://gateway", timeout=10)


def messages_body(marker: str) -> dict[str, Any]:
    return {
        "model": "claude-test-model",
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": [{"type": "text", "text": f"{marker} go"}]}],
        "stream": True,
        "tools": [{"name": "Write", "input_schema": {"type": "object"}}],
    }


def post(run_dir: Path, headers: dict[str, str], marker: str = "m") -> httpx.Response:
    with gateway_client(run_dir) as client:
        return client.post(PATH, json=messages_body(marker), headers=headers)


def gateway_socket(run_dir: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(10)
    sock.connect(str(run_dir / MODEL_SOCKET))
    return sock


def exchange(sock: socket.socket, request: bytes) -> bytes:
    """Send `request`, half-close, and read the answer until the server hangs up."""
    sock.sendall(request)
    sock.shutdown(socket.SHUT_WR)
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def upstream_headers(fake: FakeAnthropic, marker: str) -> dict[str, str]:
    [seen] = fake.requests(marker)
    return {name.lower(): value for name, value in seen.headers.items()}


def forwarded_nothing(fake: FakeAnthropic) -> bool:
    return not fake.requests() and not fake.side_requests()


def test_gateway_right_token_streams_the_upstream_sse_unchanged(open_gateway, fake, run_dir):
    fake.script("same-marker", *[Text("Hello through the gateway", chunk_chars=4)] * 2)
    direct = httpx.post(
        fake.base_url + PATH, json=messages_body("same-marker"), headers={"x-api-key": REAL_KEY}
    )
    run = open_gateway()

    relayed = post(run_dir, {"x-api-key": run.token}, "same-marker")

    assert relayed.status_code == 200
    assert relayed.headers["content-type"] == direct.headers["content-type"]
    # Only the fake's running ids (msg_fake000001, ...) may differ between the two replies.
    ids = re.compile(rb"_fake\d+")
    assert ids.sub(b"_fake", relayed.content) == ids.sub(b"_fake", direct.content)
    assert b"message_stop" in relayed.content


@pytest.mark.parametrize(("header", "scheme"), [("x-api-key", ""), ("authorization", "Bearer ")])
def test_gateway_replaces_the_run_token_by_the_real_key(
    open_gateway, fake, run_dir, header, scheme
):
    fake.script("key-marker", Text("hi"))
    run = open_gateway()

    response = post(run_dir, {header: scheme + run.token}, "key-marker")

    assert response.status_code == 200
    headers = upstream_headers(fake, "key-marker")
    assert headers["x-api-key"] == REAL_KEY
    assert "authorization" not in headers
    [seen] = fake.requests("key-marker")
    assert run.token not in json.dumps(seen.headers) + json.dumps(seen.body)


def test_gateway_oauth_credential_is_sent_as_bearer(open_gateway, fake, run_dir):
    fake.script("oauth-marker", Text("hi"))
    run = open_gateway(credential=ModelCredential(oauth_token=REAL_OAUTH))

    response = post(run_dir, {"x-api-key": run.token}, "oauth-marker")

    assert response.status_code == 200
    headers = upstream_headers(fake, "oauth-marker")
    assert headers["authorization"] == f"Bearer {REAL_OAUTH}"
    assert "x-api-key" not in headers


@pytest.mark.parametrize(
    ("presented", "reason"),
    [
        (lambda token: {}, "missing token"),
        (lambda token: {"x-api-key": "sk-ant-wrong"}, "wrong token"),
        (lambda token: {"authorization": "Bearer sk-ant-wrong"}, "wrong token"),
        (lambda token: {"authorization": f"Basic {token}"}, "missing token"),
    ],
    ids=["none", "wrong-key", "wrong-bearer", "not-bearer"],
)
def test_gateway_without_the_run_token_answers_401_and_forwards_nothing(
    open_gateway, fake, run_dir, presented, reason
):
    fake.script("refused-marker", Text("never"))
    run = open_gateway()

    response = post(run_dir, presented(run.token), "refused-marker")

    assert response.status_code == 401
    assert response.json() == {
        "type": "error",
        "error": {"type": "authentication_error", "message": f"model gateway: {reason}"},
    }
    assert forwarded_nothing(fake)


def test_gateway_after_revoke_answers_401_expired_on_an_open_connection(
    open_gateway, fake, run_dir
):
    run = open_gateway()
    request = (
        f"POST {PATH} HTTP/1.1\r\nhost: gateway\r\nx-api-key: {run.token}\r\n"
        "content-type: application/json\r\ncontent-length: 2\r\n\r\n{}"
    )

    with gateway_socket(run_dir) as sock:
        run.gateway.revoke()
        answer = exchange(sock, request.encode())

    assert answer.startswith(b"HTTP/1.1 401 ")
    assert answer.endswith(b'"message": "model gateway: expired token"}}')
    assert forwarded_nothing(fake)


def test_gateway_after_close_run_refuses_connections(network, open_gateway, fake, run_dir):
    run = open_gateway()
    network.close_run(run)

    with pytest.raises(httpx.ConnectError):
        post(run_dir, {"x-api-key": run.token})

    assert forwarded_nothing(fake)


def test_gateway_close_run_cuts_an_answer_being_streamed(network, open_gateway, fake, run_dir):
    fake.script("cut-marker", Hang())
    run = open_gateway()
    request = {"json": messages_body("cut-marker"), "headers": {"x-api-key": run.token}}

    with gateway_client(run_dir) as client, client.stream("POST", PATH, **request) as response:
        lines = response.iter_lines()
        next(line for line in lines if line.startswith("data: "))
        network.close_run(run)
        with pytest.raises(httpx.RemoteProtocolError):
            list(lines)


def test_gateway_refusal_log_has_the_reason_but_not_the_presented_token(open_gateway, run_dir):
    open_gateway()
    presented = "sk-ant-api03-someone-elses-real-secret"

    with capture_logs() as logs:
        response = post(run_dir, {"x-api-key": presented})

    assert response.status_code == 401
    refused = [entry for entry in logs if entry["event"] == "gateway_refused"]
    assert [entry["reason"] for entry in refused] == ["wrong token"]
    assert presented not in repr(logs)


def test_gateway_streams_message_start_while_upstream_still_holds_the_reply(
    open_gateway, fake, run_dir
):
    fake.script("hang-marker", Hang())
    run = open_gateway()
    request = {"json": messages_body("hang-marker"), "headers": {"x-api-key": run.token}}

    with gateway_client(run_dir) as client, client.stream("POST", PATH, **request) as response:
        lines = response.iter_lines()
        # A buffering gateway would hold this until the reply ends: a read timeout.
        first = next(line for line in lines if line.startswith("data: "))
        upstream_held = fake.in_flight == 1
        fake.release()
        rest = "\n".join(lines)

    assert json.loads(first.removeprefix("data: "))["type"] == "message_start"
    assert upstream_held
    assert "released" in rest and "message_stop" in rest


def test_gateway_body_over_the_limit_answers_413(open_gateway, fake, run_dir):
    run = open_gateway()

    with gateway_client(run_dir) as client:
        response = client.post(
            PATH,
            content=b"x" * (MAX_REQUEST_BYTES + 1),
            headers={"x-api-key": run.token, "content-type": "application/json"},
        )

    assert response.status_code == 413
    assert response.json()["error"]["type"] == "request_too_large"
    assert forwarded_nothing(fake)


def test_gateway_absolute_form_target_answers_400(open_gateway, fake, run_dir):
    run = open_gateway()
    request = (
        "POST http://elsewhere.example/v1/messages HTTP/1.1\r\nhost: elsewhere.example\r\n"
        f"x-api-key: {run.token}\r\ncontent-length: 0\r\n\r\n"
    )

    with gateway_socket(run_dir) as sock:
        answer = exchange(sock, request.encode())

    assert answer.startswith(b"HTTP/1.1 400 ")
    assert b'"invalid_request_error"' in answer
    assert forwarded_nothing(fake)


def test_gateway_unreachable_upstream_answers_502_api_error(open_gateway, run_dir):
    run = open_gateway(upstream=f"http://127.0.0.1:{free_port()}")

    response = post(run_dir, {"x-api-key": run.token})

    assert response.status_code == 502
    assert response.json() == {
        "type": "error",
        "error": {"type": "api_error", "message": "model gateway: the model API is unreachable"},
    }


def test_the_model_api_is_reached_over_verified_tls_from_one_shared_context():
    context = client_tls(trust_env=False)
    assert context is client_tls(trust_env=False)  # made once, before a worker forks
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
    assert context.cert_store_stats()["x509_ca"] > 0
