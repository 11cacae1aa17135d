"""The wuxing client's local file cache: the last release ``WuxingClient.config`` got per
namespace, so an application keeps its configuration through a wuxing outage (as Apollo's
client keeps its local cache files).

One JSON file per namespace in a directory the user chooses (created 0700; files 0600),
written whole or not at all (a temporary file in the same directory, fsync, ``os.replace``).
A file holds the server's answer and when it was cached - never the client's token or
headers. A namespace is percent-encoded into the file name (``../x`` -> ``ns...%2Fx.json``;
over :data:`STEM_MAX` characters: its SHA-256), so no name reaches outside the directory.
A file that cannot be read back as this module wrote it is ignored with a warning: a broken
cache must never break the client.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

log = logging.getLogger(__name__)

#: The file layout's version: a file of another version is ignored (and rewritten).
FORMAT = 1
#: Longest encoded namespace used as a file name as is (file names stop at 255 bytes).
STEM_MAX = 150


@dataclass(frozen=True)
class CachedRelease:
    """A release as ``config`` answered it, and when (``time.time()``) it was cached."""

    release: dict[str, Any]
    cached_at: float


class ReleaseCache:
    """The cache files in ``directory`` (created on the first save, mode 0700)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory).expanduser().absolute()

    def path(self, namespace: str) -> Path:
        """The file of ``namespace``: always directly inside :attr:`directory`."""
        raw = namespace.encode("utf-8", "surrogatepass")
        stem = quote(raw, safe="")  # "/" and "\" encoded; "." and ".." get a prefix below
        if not stem or len(stem) > STEM_MAX:
            stem = "sha256-" + hashlib.sha256(raw).hexdigest()
        path = self.directory / f"ns.{stem}.json"
        if path.parent != self.directory:  # cannot happen with the encoding above
            raise ValueError(f"namespace {namespace!r} escapes the cache directory")
        return path

    def save(self, namespace: str, release: dict[str, Any], now: float | None = None) -> None:
        """Store ``release`` as the last one of ``namespace``, atomically."""
        path = self.path(namespace)
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        doc = {"format": FORMAT, "namespace": namespace,
               "cached_at": time.time() if now is None else now, "release": release}
        data = json.dumps(doc, separators=(",", ":")).encode("ascii")  # \u escapes: any str
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=self.directory)  # 0600
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def load(self, namespace: str) -> CachedRelease | None:
        """The cached release of ``namespace``; None when there is none or it is unusable
        (logged as a warning)."""
        path = self.path(namespace)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("wuxing client cache: cannot read %s (%s); ignored", path, exc)
            return None
        try:
            doc = json.loads(raw)
            if not (isinstance(doc, dict) and doc.get("format") == FORMAT
                    and doc.get("namespace") == namespace
                    and isinstance(doc.get("release"), dict)
                    and isinstance(doc.get("cached_at"), (int, float))):
                raise ValueError("not a release cached by this client")
        except ValueError as exc:  # (UnicodeDecodeError and JSONDecodeError are ValueErrors)
            log.warning("wuxing client cache: ignoring the corrupted file %s (%s)", path,
                        str(exc)[:200])
            return None
        return CachedRelease(doc["release"], float(doc["cached_at"]))
