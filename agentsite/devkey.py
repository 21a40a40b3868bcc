"""The development secret key: random, created once under var/, never used with DEBUG off."""

import os
import secrets
import tempfile
from pathlib import Path


def load_or_create_dev_secret_key(path: Path) -> str:
    """Return the key stored at `path`, creating it (mode 0600) on first use."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=".secret_key.")
        try:
            os.write(fd, secrets.token_urlsafe(50).encode("ascii"))
            os.close(fd)
            # link() never replaces: when processes start at once, the first key wins
            # and every process reads that one.
            os.link(tmp_name, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp_name)
    return path.read_text(encoding="ascii").strip()
