"""The process's TLS client contexts: httpx's default ones, made once."""

from __future__ import annotations

import functools
import ssl

import httpx


@functools.cache
def client_tls(*, trust_env: bool) -> ssl.SSLContext:
    """What an httpx client given `verify=True` would make (with `trust_env`, the roots
    in SSL_CERT_FILE or SSL_CERT_DIR when set; certifi's otherwise), made once per
    process and shared by every client: loading the roots costs 20-45 ms of CPU, which
    httpx spends again for each client (every GitHub job made one). A worker makes them
    before forking its pool processes, so they share them too."""
    return httpx.create_ssl_context(trust_env=trust_env)
