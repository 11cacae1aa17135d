"""The documentation site (mkdocs.yml, docs/ -> site/, `make docs`): it builds with --strict,
loads nothing from another host, renders the repository's CHANGELOG.md as it is, and the
short README still names every service of the fleet and links every page."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MKDOCS = Path(sys.executable).with_name("mkdocs")
PAGES = sorted(path.relative_to(ROOT / "docs").as_posix()
               for path in (ROOT / "docs").rglob("*.md"))
#: a script, a style sheet, a font or an image from another host
REMOTE_ASSET = re.compile(r"""<(?:script|img|source|iframe)\b[^>]*\bsrc=["']?(?:https?:)?//"""
                          r"""|<link\b[^>]*\bhref=["']?(?:https?:)?//"""
                          r"""|url\(\s*["']?(?:https?:)?//|@import\s+["']?(?:url\()?["']?(?:https?:)?//""",
                          re.I)


def make_docs_command() -> str:
    """The command of `make docs`, with this venv's mkdocs."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    recipe = re.search(r"(?m)^docs: .*\n((?:\t.*\n)+)", makefile)[1]
    line = next(line.strip() for line in recipe.splitlines() if "mkdocs build" in line)
    return line.replace("$(BIN)/mkdocs", str(MKDOCS))


def build(root: Path, site: Path) -> subprocess.CompletedProcess:
    """`make docs` in ``root``, into ``site`` (its VAR=value words become the environment)."""
    words = shlex.split(make_docs_command().replace("--site-dir site", f"--site-dir {site}"))
    env = {"PATH": "/usr/bin:/bin"}
    while "=" in words[0]:
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    return subprocess.run(words, cwd=root, env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    result = build(ROOT, out)
    assert result.returncode == 0, result.stderr
    return out


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).replace("&amp;", "&")


def test_every_page_is_built_and_nothing_comes_from_another_host(site):
    for page in PAGES:
        assert (site / page.replace(".md", ".html")).is_file(), page
    remote = {}
    for path in [*site.rglob("*.html"), *site.rglob("*.css")]:
        if hits := REMOTE_ASSET.findall(path.read_text(encoding="utf-8")):
            remote[path.relative_to(site).as_posix()] = hits
    assert remote == {}
    assert "fonts.googleapis.com" not in (site / "index.html").read_text(encoding="utf-8")
    for image in (ROOT / "docs").glob("*.png"):  # every screenshot is shown by a page
        assert (site / image.name).is_file()
        assert any(f'src="../{image.name}"' in page.read_text(encoding="utf-8")
                   for page in site.rglob("*.html")), image.name


def test_the_changelog_page_is_the_changelog_file(site):
    assert (ROOT / "docs" / "changelog.md").read_text(encoding="utf-8").strip() == \
        '--8<-- "CHANGELOG.md"'
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    page = text_of((site / "changelog.html").read_text(encoding="utf-8"))
    headings = re.findall(r"(?m)^#{1,3} (.+)$", changelog)
    assert len(headings) > 5
    for heading in headings:
        assert re.sub(r"`", "", heading).strip() in page.replace("¶", ""), heading


def test_make_docs_fails_on_a_broken_link_or_a_page_off_the_nav(tmp_path):
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    shutil.copy(ROOT / "mkdocs.yml", tmp_path)
    shutil.copy(ROOT / "CHANGELOG.md", tmp_path)
    assert build(tmp_path, tmp_path / "site").returncode == 0
    queue = tmp_path / "docs" / "queue.md"
    queue.write_text(queue.read_text(encoding="utf-8") + "\n[x](handlers.md#no-such-part)\n",
                     encoding="utf-8")
    result = build(tmp_path, tmp_path / "site")
    assert result.returncode == 1 and "no-such-part" in result.stderr
    queue.write_text("[x](no-such-page.md)\n", encoding="utf-8")
    result = build(tmp_path, tmp_path / "site")
    assert result.returncode == 1 and "no-such-page.md" in result.stderr
    queue.write_text("# The queue\n", encoding="utf-8")
    (tmp_path / "docs" / "stray.md").write_text("# Not in the nav\n", encoding="utf-8")
    result = build(tmp_path, tmp_path / "site")
    assert result.returncode == 1 and "stray.md" in result.stderr
    (tmp_path / "docs" / "stray.md").unlink()
    (tmp_path / "CHANGELOG.md").unlink()  # the changelog page cannot lose its source quietly
    assert build(tmp_path, tmp_path / "site").returncode == 1


def test_nav_lists_every_page_once():
    nav = re.findall(r"(?m)^\s+- [^:\n]+: (\S+\.md)$", (ROOT / "mkdocs.yml").read_text())
    assert sorted(nav) == PAGES


def test_readme_names_every_service_and_links_every_page():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    fleet = tomllib.loads((ROOT / "deploy" / "fleet.toml").read_text())["service"]
    rows = dict(re.findall(r"(?m)^\| \*\*(?:\S+ )?([a-z]+)\*\* \| (\d+) \|", readme))
    assert rows == {name: str(spec["port"]) for name, spec in fleet.items()}
    assert len(rows) == 6
    linked = set(re.findall(r"\]\(docs/([^)#]+\.md)\)", readme))
    assert linked == set(PAGES) - {"index.md", "changelog.md"}
    assert "](CHANGELOG.md)" in readme


def test_make_test_builds_the_docs_before_pytest():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    test = re.search(r"(?m)^test: (.*?) ##.*\n((?:\t.*\n)+)", makefile)
    assert "docs" in test[1].split() and "pytest" in test[2]
    docs = re.search(r"(?m)^docs: .*\n((?:\t.*\n)+)", makefile)[1]
    assert "mkdocs build --strict" in docs and "--site-dir site" in docs
    assert "/site/" in (ROOT / ".gitignore").read_text().splitlines()
