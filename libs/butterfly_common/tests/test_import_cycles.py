"""The framework's and every service's modules import each other as a hierarchy, never in
a loop (a lazy import inside a function counts: it only postpones the loop to the first
call)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from butterfly_common.testing.imports import import_cycles, import_graph


def test_the_framework_has_no_import_cycle():
    assert import_cycles("butterfly_common") == []


@pytest.mark.parametrize("package", ["butterfly_baichuan", "butterfly_canghai", "butterfly_core",
                                     "butterfly_ruqi", "butterfly_wuxing", "butterfly_xingqiao"])
def test_no_service_has_an_import_cycle(package: str):
    assert import_cycles(package) == []


def test_runtime_sits_below_the_queue_client():
    graph = import_graph("butterfly_common")
    assert "butterfly_common.runtime" in graph["butterfly_common.mq.client"]
    assert not any(m.startswith("butterfly_common.mq") for m in graph["butterfly_common.runtime"])


def _package(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")


def test_a_lazy_import_loop_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    _package(tmp_path, {
        "loopy/__init__.py": "from .a import f\n",
        "loopy/a.py": "from . import c\n\ndef f():\n    from .b import g\n    return g()\n",
        "loopy/b.py": "def g():\n    from loopy import a\n    return a\n",
        "loopy/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                      "    from .a import f\n",
        "loopy/sub/__init__.py": "",
        "loopy/sub/d.py": "from ..c import TYPE_CHECKING\nfrom .. import b\n",
    })
    monkeypatch.syspath_prepend(str(tmp_path))
    graph = import_graph("loopy")
    assert graph["loopy"] == {"loopy.a"}
    assert graph["loopy.a"] == {"loopy.b", "loopy.c"}
    assert graph["loopy.c"] == set()  # TYPE_CHECKING imports never run
    assert graph["loopy.sub.d"] == {"loopy.b", "loopy.c"}
    assert import_cycles("loopy") == [["loopy.a", "loopy.b"]]


def test_not_a_package_is_refused():
    with pytest.raises(ValueError, match="not an importable package"):
        import_cycles("json.decoder")
