"""Local stand-ins for the base images deploy/ names, built from Debian's packages.

No image registry is reachable here, so the official ``debian:bookworm-slim``,
``python:3.11-slim``, ``node:20-slim``, ``redis:7.2`` and ``mariadb:11`` cannot be pulled.
Each is built under its official tag from images/<name>/ (see README.md beside this file
for what differs), only when the engine has no image of that tag: an engine that has the
real ones keeps them, and every stand-in stays cached for the next run. deploy/ is never
changed for them.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEBIAN = "debian:bookworm-slim"
MIRROR = "http://deb.debian.org/debian"
LABEL = "org.butterfly.stand-in=1"
#: official tag -> folder under images/ (all FROM the Debian stand-in)
IMAGES = {"python:3.11-slim": "python", "node:20-slim": "node", "redis:7.2": "redis",
          "mariadb:11": "mariadb"}


def have(tag: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", tag], capture_output=True,
                          timeout=60).returncode == 0


def build_debian() -> None:
    """``debootstrap --variant=minbase bookworm``, imported as ``debian:bookworm-slim``."""
    with tempfile.TemporaryDirectory(prefix="bf-debootstrap-") as tmp:
        root = Path(tmp) / "root"
        subprocess.run(["debootstrap", "--variant=minbase", "bookworm", str(root), MIRROR],
                       check=True, capture_output=True, timeout=900)
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
            shutil.rmtree(root / cache, ignore_errors=True)
            (root / cache).mkdir(parents=True)
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(["docker", "import", "--change", 'CMD ["bash"]', "--change",
                        "ENV LANG=C.UTF-8", "--change", f"LABEL {LABEL}", "-", DEBIAN],
                       stdin=tar.stdout, check=True, capture_output=True, timeout=300)
        assert tar.wait(timeout=60) == 0


def build(tag: str) -> None:
    result = subprocess.run(["docker", "build", "-q", "--label", LABEL, "-t", tag,
                             str(HERE / "images" / IMAGES[tag])],
                            capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, f"building stand-in {tag}:\n{result.stderr[-3000:]}"


def ensure() -> list[str]:
    """Build every missing base image; returns the tags built (empty when all cached)."""
    built = []
    if not have(DEBIAN):
        build_debian()
        built.append(DEBIAN)
    missing = [tag for tag in IMAGES if not have(tag)]
    with ThreadPoolExecutor(len(missing) or 1) as pool:
        list(pool.map(build, missing))  # apt downloads dominate: in parallel
    return built + missing
