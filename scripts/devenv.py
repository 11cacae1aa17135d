"""The development ``.env`` that `make run` keeps in its working directory.

Every ``butterfly`` command reads ``.env`` from the working directory (the environment
wins), so what `make run` writes here reaches a ``./butterfly`` call in another terminal:
the admin token it created and the URL of the Redis it started.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from pathlib import Path

from dotenv import dotenv_values, set_key


def read(path: Path) -> dict[str, str]:
    """The variables of ``path`` (none when it does not exist)."""
    if not path.exists():
        return {}
    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def write(path: Path, name: str, value: str) -> None:
    """Set ``name`` in ``path``, keeping every other line; unquoted, so ``grep``/``sed``
    read it as is. A new file is readable by its owner only (it holds a token)."""
    if not path.exists():
        path.touch(mode=0o600)
    set_key(path, name, value, quote_mode="never")


def ensure_admin_token(path: Path, environ: Mapping[str, str]) -> str | None:
    """Create a random ``BUTTERFLY_ADMIN_TOKEN`` in ``path`` unless the environment or the
    file already has one; the new token (for printing once), else None."""
    if (environ.get("BUTTERFLY_ADMIN_TOKEN") or "").strip():
        return None
    if read(path).get("BUTTERFLY_ADMIN_TOKEN", "").strip():
        return None
    token = secrets.token_hex(24)
    write(path, "BUTTERFLY_ADMIN_TOKEN", token)
    return token
