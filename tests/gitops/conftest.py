from tests.gitops.repos import mirror, remote

__all__ = ["mirror", "remote"]
