"""One naming rule for test modules, so a name says where a test lives and what it tests:

- a service's tests (``services/<svc>/tests/``) are ``test_<svc>_<what>.py``;
- the framework's (``libs/butterfly_common/tests/``) and the cross-service ones (``tests/``)
  are ``test_<what>.py``;
- never named after an issue (``test_issue12_...``): the what outlives the ticket;
- every basename is unique in the repository: pytest.ini keeps the default ``prepend``
  import mode, which imports each test module (and the helpers beside it) by its basename
  from its own folder, so two ``test_api.py`` would collide.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TEST_ROOTS = ("libs", "services", "tests")


def all_test_modules() -> list[Path]:
    found: list[Path] = []
    for top in TEST_ROOTS:
        found += [p for p in (ROOT / top).rglob("test_*.py")
                  if not {".venv", "node_modules", "build"} & set(p.parts)]
    return sorted(found)


def test_a_service_test_is_named_after_its_service():
    services = sorted(p.name for p in (ROOT / "services").iterdir() if (p / "tests").is_dir())
    assert {"baichuan", "canghai", "core", "ruqi", "wuxing", "xingqiao"} <= set(services)
    wrong = [p.relative_to(ROOT).as_posix() for svc in services
             for p in (ROOT / "services" / svc / "tests").rglob("test_*.py")
             if not p.name.startswith(f"test_{svc}_")]
    assert wrong == []


def test_no_test_is_named_after_an_issue():
    assert [p.name for p in all_test_modules() if re.match(r"test_(issue|bug|gh)\d", p.name)] == []


def test_every_test_module_basename_is_unique():
    counts = Counter(p.name for p in all_test_modules())
    assert len(counts) > 100
    assert [name for name, n in counts.items() if n > 1] == []
