"""The worker's side of every sandbox's network: one event loop in a thread of its own,
serving each run's model gateway and egress proxy on unix sockets of that run's own.

One per process, created on first use (after a prefork pool forked, never before).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx

from cli_exec.sandbox.egress import MAX_HEAD_BYTES, EgressPolicy, EgressProxy
from cli_exec.sandbox.gateway import ModelCredential, RunGateway, new_run_token
from cli_exec.tls import client_tls

T = TypeVar("T")
MODEL_SOCKET = "model.sock"
PROXY_SOCKET = "proxy.sock"
_CALL_TIMEOUT_S = 10.0


@dataclass
class RunNetwork:
    """The listeners of one run; closing them revokes its token and cuts its tunnels."""

    gateway: RunGateway
    proxy: EgressProxy
    servers: tuple[asyncio.AbstractServer, ...]

    @property
    def token(self) -> str:
        return self.gateway.token


class SandboxNetwork:
    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="sandbox-network", daemon=True
        )
        self._thread.start()
        self._client = self._call(self._make_client())

    @staticmethod
    async def _make_client() -> httpx.AsyncClient:
        # No read timeout: a streamed answer may pause for as long as the model thinks;
        # the CLI's own timeouts and the run's idle limit bound it.
        timeout = httpx.Timeout(connect=10.0, read=None, write=60.0, pool=10.0)
        return httpx.AsyncClient(
            timeout=timeout,
            follow_redirects=False,
            trust_env=False,
            verify=client_tls(trust_env=False),
        )

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(_CALL_TIMEOUT_S)

    def open_run(
        self,
        *,
        run_dir: Path,
        upstream: str,
        credential: ModelCredential,
        policy: EgressPolicy,
        label: str,
    ) -> RunNetwork:
        return self._call(self._open(run_dir, upstream, credential, policy, label))

    async def _open(
        self,
        run_dir: Path,
        upstream: str,
        credential: ModelCredential,
        policy: EgressPolicy,
        label: str,
    ) -> RunNetwork:
        gateway = RunGateway(new_run_token(), upstream, credential, self._client, label)
        proxy = EgressProxy(policy, label)
        model_server = await asyncio.start_unix_server(
            gateway.handle, path=str(run_dir / MODEL_SOCKET)
        )
        try:
            proxy_server = await asyncio.start_unix_server(
                proxy.handle, path=str(run_dir / PROXY_SOCKET), limit=MAX_HEAD_BYTES
            )
        except OSError:
            model_server.close()
            raise
        return RunNetwork(gateway, proxy, (model_server, proxy_server))

    def close_run(self, run: RunNetwork) -> None:
        # Revoked here, synchronously: from this line on the token is worthless.
        run.gateway.revoke()
        with contextlib.suppress(TimeoutError, RuntimeError):
            self._call(self._close(run))

    def close(self) -> None:
        """Stop the loop and its upstream client (a worker keeps its network for life;
        tests and benchmarks do not)."""
        with contextlib.suppress(TimeoutError, RuntimeError):
            self._call(self._client.aclose())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(_CALL_TIMEOUT_S)
        self._loop.close()

    @staticmethod
    async def _close(run: RunNetwork) -> None:
        for server in run.servers:
            server.close()
        run.gateway.close()
        run.proxy.close()


_NETWORK: tuple[int, SandboxNetwork] | None = None
_NETWORK_LOCK = threading.Lock()


def sandbox_network() -> SandboxNetwork:
    """This process's network side, started on first use (per PID: forks get their own)."""
    global _NETWORK
    with _NETWORK_LOCK:
        if _NETWORK is None or _NETWORK[0] != os.getpid():
            _NETWORK = (os.getpid(), SandboxNetwork())
        return _NETWORK[1]
