"""Download handlers: files served from their root, escapes refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture
def files_client(make_app, tmp_path):
    app = make_app()
    data = tmp_path / "data" / "download"  # Settings.download_root
    (data / "sub").mkdir(parents=True)
    (data / "report.csv").write_text("a,b\n1,2\n")
    (data / "sub" / "notes.txt").write_text("hello")
    (tmp_path / "secret.txt").write_text("top secret")
    return app.test_client()


def test_file_served_as_attachment(files_client):
    response = files_client.get("/kinds/fetch?filename=report.csv")
    assert response.status_code == 200
    assert response.data == b"a,b\n1,2\n"
    assert response.headers["Content-Type"].startswith("text/csv")
    assert response.headers["Content-Disposition"] == "attachment; filename=report.csv"
    assert response.headers["x-reqid"]


def test_file_inline(files_client):
    response = files_client.get("/kinds/fetch?filename=sub/notes.txt&inline=1")
    assert response.status_code == 200 and response.data == b"hello"
    assert response.headers["Content-Disposition"].startswith("inline")


@pytest.mark.parametrize("name", ["../secret.txt", "sub/../../secret.txt", "/etc/passwd",
                                  "..", "sub/../..", "%2e%2e/secret.txt", "..\\secret.txt", ""])
def test_escapes_refused(files_client, name):
    response = files_client.get("/kinds/fetch", query_string={"filename": name})
    assert response.status_code in (400, 403, 404)
    assert b"top secret" not in response.data and b"root:" not in response.data
    if name in ("../secret.txt", "/etc/passwd", "sub/../../secret.txt"):
        assert response.status_code == 403
        assert json.loads(response.data) == {"stat": "ERR_FORBIDDEN"}


def test_missing_file_404(files_client):
    response = files_client.get("/kinds/fetch?filename=absent.txt")
    assert response.status_code == 404
    assert response.headers["x-reason"] == "File does not exist"


def test_directory_is_not_a_file(files_client):
    assert files_client.get("/kinds/fetch?filename=sub").status_code == 404


def test_symlink_out_of_root_is_not_followed(files_client, tmp_path):
    Path(tmp_path / "data" / "download" / "link.txt").symlink_to(tmp_path / "secret.txt")
    response = files_client.get("/kinds/fetch?filename=link.txt")
    assert response.status_code == 403
    assert b"top secret" not in response.data


def test_defect_05_the_database_beside_the_downloads_is_not_served(files_client, tmp_path):
    (tmp_path / "data" / "butterfly.db").write_text("SQLite format 3")
    for name in ("butterfly.db", "../butterfly.db"):
        response = files_client.get("/kinds/fetch", query_string={"filename": name})
        assert response.status_code in (403, 404), name
        assert b"SQLite" not in response.data


@pytest.mark.parametrize("name", ["a\x00b", "\x00", "x\ny", "a" * 5000, "b/" * 300 + "c"])
def test_defect_09_bad_download_names_are_4xx(files_client, name):
    response = files_client.get("/kinds/fetch", query_string={"filename": name})
    assert 400 <= response.status_code < 500, response.status_code
    assert response.headers["x-reason"]


def test_defect_05_a_download_root_holding_the_database_is_refused(tmp_path):
    from butterfly_common.settings import SettingsError, load_settings

    for env in ({"BUTTERFLY_DATA_DIR": str(tmp_path), "BUTTERFLY_DOWNLOAD_DIR": str(tmp_path)},
                {"BUTTERFLY_DATA_DIR": str(tmp_path / "d"),
                 "BUTTERFLY_LOG_DIR": str(tmp_path / "files" / "log"),
                 "BUTTERFLY_DOWNLOAD_DIR": str(tmp_path / "files")}):
        with pytest.raises(SettingsError, match="BUTTERFLY_DOWNLOAD_DIR"):
            load_settings(env)
    ok = load_settings({"BUTTERFLY_DATA_DIR": str(tmp_path)})
    assert ok.download_root == tmp_path / "download"
    assert load_settings({"BUTTERFLY_DOWNLOAD_DIR": str(tmp_path / "pub"),
                          "BUTTERFLY_DATA_DIR": str(tmp_path / "d")}).download_root == \
        tmp_path / "pub"
