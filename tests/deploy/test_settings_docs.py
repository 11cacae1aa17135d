"""docs/configuration.md follows the declared settings (scripts/gen_settings_docs.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gen_settings_docs.py"
PAGE = ROOT / "docs" / "configuration.md"


def gen(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True,
                          text=True, timeout=120, check=False)


def test_the_page_is_up_to_date():
    done = gen("--check")
    assert done.returncode == 0, done.stderr


def test_a_stale_default_is_caught_and_regenerated(tmp_path):
    page = tmp_path / "configuration.md"
    text = PAGE.read_text(encoding="utf-8")
    assert "| `RUQI_WORKERS` | `32` |" in text
    page.write_text(text.replace("| `RUQI_WORKERS` | `32` |", "| `RUQI_WORKERS` | `16` |"),
                    encoding="utf-8")
    done = gen("--check", "--page", str(page))
    assert done.returncode == 1 and "RUQI_WORKERS" in done.stderr
    assert gen("--page", str(page)).returncode == 0
    assert page.read_text(encoding="utf-8") == text


def test_an_undocumented_variable_gets_a_row_in_its_section(tmp_path):
    page = tmp_path / "configuration.md"
    text = PAGE.read_text(encoding="utf-8")
    row = next(line for line in text.splitlines() if line.startswith("| `XINGQIAO_GRAPH_TIMEOUT`"))
    page.write_text(text.replace(row + "\n", ""), encoding="utf-8")
    done = gen("--check", "--page", str(page))
    assert done.returncode == 1 and "XINGQIAO_GRAPH_TIMEOUT: declared but not" in done.stderr
    assert gen("--page", str(page)).returncode == 0
    xingqiao = page.read_text(encoding="utf-8").split("### 星桥 xingqiao")[1]
    assert "| `XINGQIAO_GRAPH_TIMEOUT` | `10` | seconds dot may take to render one graph |" \
        in xingqiao
    assert gen("--check", "--page", str(page)).returncode == 0
