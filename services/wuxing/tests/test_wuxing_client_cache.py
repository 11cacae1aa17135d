"""The client's release cache (butterfly_wuxing.client_cache) on its own: file names that
stay in the directory, private modes, atomic writes, broken files ignored."""

from __future__ import annotations

import json
import logging
import stat

import pytest

from butterfly_wuxing.client_cache import STEM_MAX, ReleaseCache

RELEASE = {"namespace": "demo", "revision": 7, "gray_id": None, "namespace_revision": 9,
           "values": {"web1": {"i|port": 80}}}


def test_a_saved_release_loads_back_with_its_time(tmp_path):
    cache = ReleaseCache(tmp_path / "c")
    assert cache.load("demo") is None  # nothing yet, no directory yet, no warning
    cache.save("demo", RELEASE, now=1000.5)
    got = cache.load("demo")
    assert got is not None
    assert got.release == RELEASE
    assert got.cached_at == 1000.5
    cache.save("demo", {**RELEASE, "revision": 8})
    got = cache.load("demo")
    assert got is not None and got.release["revision"] == 8


def test_directory_is_0700_files_0600_and_no_temporary_file_stays(tmp_path):
    cache = ReleaseCache(tmp_path / "deep" / "c")
    cache.save("demo", RELEASE)
    cache.save("demo", RELEASE)
    assert stat.S_IMODE((tmp_path / "deep" / "c").stat().st_mode) == 0o700
    files = list((tmp_path / "deep" / "c").iterdir())
    assert [f.name for f in files] == ["ns.demo.json"]
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600


@pytest.mark.parametrize("namespace", [
    "../escape", "..", ".", "a/b", "/etc/passwd", "..\\x", "", "x" * 300, "\udcff",
    "ns:with@all.chars-_", "é/../../x"])
def test_no_namespace_leaves_the_directory(tmp_path, namespace):
    cache = ReleaseCache(tmp_path / "c")
    path = cache.path(namespace)
    assert path.parent == cache.directory
    assert path.name not in (".", "..") and len(path.name) <= STEM_MAX + 8
    cache.save(namespace, RELEASE)
    assert [p.name for p in (tmp_path / "c").iterdir()] == [path.name]
    assert [p.name for p in tmp_path.iterdir()] == ["c"]  # nothing beside it
    got = cache.load(namespace)
    assert got is not None and got.release == RELEASE


def test_distinct_namespaces_get_distinct_files(tmp_path):
    cache = ReleaseCache(tmp_path)
    names = ["a", "A", "a.b", "a%2Eb", "a/b", "a%2Fb", "..", ".", "...", ""]
    assert len({cache.path(n) for n in names}) == len(names)


@pytest.mark.parametrize("content", [
    b"", b"{not json", b"\xff\xfe", b"[]", b'{"format": 1}',
    json.dumps({"format": 1, "namespace": "other", "cached_at": 1.0,
                "release": RELEASE}).encode(),
    json.dumps({"format": 99, "namespace": "demo", "cached_at": 1.0,
                "release": RELEASE}).encode(),
    json.dumps({"format": 1, "namespace": "demo", "cached_at": "x",
                "release": RELEASE}).encode()])
def test_a_corrupted_file_is_ignored_with_a_warning(tmp_path, caplog, content):
    cache = ReleaseCache(tmp_path)
    cache.path("demo").write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="butterfly_wuxing.client_cache"):
        assert cache.load("demo") is None
    assert "corrupted" in caplog.text
    cache.save("demo", RELEASE)  # and the next save repairs it
    got = cache.load("demo")
    assert got is not None and got.release == RELEASE


def test_an_unreadable_file_is_ignored_with_a_warning(tmp_path, caplog):
    cache = ReleaseCache(tmp_path)
    cache.path("demo").mkdir()  # a directory where the file should be: reading fails
    with caplog.at_level(logging.WARNING, logger="butterfly_wuxing.client_cache"):
        assert cache.load("demo") is None
    assert "cannot read" in caplog.text


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    cache = ReleaseCache(tmp_path)
    cache.save("demo", RELEASE)
    with pytest.raises(TypeError):  # not JSON: fails before anything is written
        cache.save("demo", {"values": object()})
    cache.path("x").mkdir()  # os.replace onto a directory fails after the temp file exists
    with pytest.raises(OSError):
        cache.save("x", RELEASE)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ns.demo.json", "ns.x.json"]
    got = cache.load("demo")
    assert got is not None and got.release == RELEASE
