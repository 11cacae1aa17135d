"""`make compose-env`: write deploy/.env with fresh secrets for ``docker compose``.

``python3 scripts/compose_env.py [PATH]`` writes PATH instead (for ``--env-file``).

Compose reads ``.env`` beside the compose file. Each secret the compose files require
(``${VAR:?...}``) is created once, at random, unless the environment or the file already
has it; existing lines are kept. The file is readable by its owner only. Standard library
only, so it runs before any venv exists.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

ENV_FILE = Path(__file__).resolve().parent.parent / "deploy" / ".env"
#: what compose requires, and how many random bytes each gets (hex-encoded: URL-safe)
SECRETS = {"BUTTERFLY_SECRET_KEY": 32, "BUTTERFLY_ADMIN_TOKEN": 24, "BUTTERFLY_DB_PASSWORD": 16}


def present(path: Path) -> set[str]:
    """Names that ``path`` sets to a non-empty value."""
    if not path.exists():
        return set()
    names = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        name, sep, value = line.partition("=")
        if sep and not name.lstrip().startswith("#") and value.strip():
            names.add(name.strip())
    return names


def main(path: Path = ENV_FILE) -> int:
    have = present(path) | {n for n in SECRETS if os.environ.get(n, "").strip()}
    missing = [n for n in SECRETS if n not in have]
    if not missing:
        print(f"{path}: every secret is set already")
        return 0
    if not path.exists():
        path.touch(mode=0o600)
    text = path.read_text(encoding="utf-8")
    with path.open("a", encoding="utf-8") as out:
        if text and not text.endswith("\n"):
            out.write("\n")
        for name in missing:
            out.write(f"{name}={secrets.token_hex(SECRETS[name])}\n")
    print(f"{path}: created {', '.join(missing)} (keep this file private)")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else ENV_FILE))
