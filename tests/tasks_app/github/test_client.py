"""What making a GitHub client costs: no loading of TLS roots per client."""

import ssl
from unittest import mock

from cli_exec.tls import client_tls
from tasks_app.services.github import GitHubClient


def test_clients_share_the_process_tls_context_instead_of_loading_the_roots_each():
    client_tls(trust_env=True)  # what the worker makes before forking its pool
    load = ssl.SSLContext.load_verify_locations
    loads = []

    def counted(context: ssl.SSLContext, *args: object, **kwargs: object) -> None:
        loads.append(args or kwargs)
        load(context, *args, **kwargs)

    with mock.patch.object(ssl.SSLContext, "load_verify_locations", counted):
        for _ in range(5):
            with GitHubClient(token="t", base_url="https://api.github.example"):
                pass
    assert loads == []
