"""Issue 12, defects 5 and 9 through real gunicorn (``butterfly serve core``): the download
folder is not the data dir, and a NUL in a file name is a 4xx, not gunicorn's HTML 500."""

from __future__ import annotations

import requests

from butterfly_common.testing import ButterflyService, RedisServer, wait_until


def test_defect_05_and_09_downloads_served_by_gunicorn():
    with RedisServer() as redis_server:
        core = ButterflyService("core", {"BUTTERFLY_REDIS_URL": redis_server.url,
                                         "BUTTERFLY_WORKERS": "1"})
        with core:
            data = core.workdir / "data"
            wait_until(lambda: requests.get(f"{core.url}/readyz", timeout=5).ok, 30)
            assert (data / "butterfly.db").is_file()  # the service's SQLite lives here
            (data / "download").mkdir(exist_ok=True)
            (data / "download" / "hello.txt").write_text("hi\n")
            url = f"{core.url}/demo_download/download_file"

            ok = requests.get(url, params={"filename": "hello.txt"}, timeout=10)
            assert ok.status_code == 200 and ok.text == "hi\n"
            for name in ("butterfly.db", "../butterfly.db", "../log/core/access.log"):
                refused = requests.get(url, params={"filename": name}, timeout=10)
                assert refused.status_code in (403, 404), name
                assert b"SQLite" not in refused.content
            for name in ("a\x00b", "\x00"):
                bad = requests.get(url, params={"filename": name}, timeout=10)
                assert bad.status_code == 400, bad.status_code
                assert bad.json() == {"stat": "ERR_BAD_PARAMS"} and bad.headers["x-reason"]
            raw = requests.get(f"{url}?filename=%00", timeout=10)
            assert raw.status_code == 400
