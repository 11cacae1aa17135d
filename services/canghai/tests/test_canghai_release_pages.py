"""The Releases pages over HTTP without a browser: roles and CSRF checked before wuxing is
asked, bad input a 4xx, wuxing not answering a 502 (audited when it was a write). The
browser test (test_canghai_releases_browser.py) drives them against a real wuxing."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest
from canghai_helpers import PASSWORD, page_csrf, sign_in
from flask.testing import FlaskClient

WRITES = {"review": {"review": "1"}, "draft": {"instance_name": "web1", "item_name": "i|port",
                                               "item_value": "81"},
          "draft/discard": {}, "publish": {"message": "m"},
          "decide": {"decision": "approve", "comment": "ok"}, "rollback": {"revision": "3"},
          "gray/create": {"labels": "canary"},
          "gray/action": {"gray_id": "1", "action": "promote"}}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def down(app_for: Callable) -> FlaskClient:
    """A console whose wuxing does not answer (nothing listens on its port)."""
    from butterfly_canghai import users

    app = app_for(BUTTERFLY_WUXING_URL=f"http://127.0.0.1:{_closed_port()}")
    for name, role in (("ada", "admin"), ("otto", "operator"), ("vera", "viewer")):
        users.add_user(name, PASSWORD, role)
    return app.test_client()


@pytest.mark.parametrize("path", sorted(WRITES))
def test_a_viewer_is_refused_every_write(client: FlaskClient, path: str) -> None:
    sign_in(client, "vera")
    csrf = page_csrf(client)
    r = client.post(f"/console/releases/{path}",
                    data={"namespace": "rel", **WRITES[path], "csrf_token": csrf})
    assert r.status_code == 403, r.headers.get("x-reason")
    assert r.headers["x-reason"] == "needs role operator" or path == "review"


def test_publishing_mode_needs_admin_and_writes_need_csrf(client: FlaskClient) -> None:
    sign_in(client, "otto")
    csrf = page_csrf(client)
    r = client.post("/console/releases/review",
                    data={"namespace": "rel", "review": "1", "csrf_token": csrf})
    assert (r.status_code, r.headers["x-reason"]) == (403, "needs role admin")
    r = client.post("/console/releases/publish", data={"namespace": "rel", "message": "m"})
    assert r.status_code == 403 and "CSRF" in r.headers["x-reason"]


@pytest.mark.parametrize(("path", "form", "why"), [
    ("publish", {}, "namespace is required"),
    ("publish", {"namespace": "x" * 17}, "namespace longer than 16 characters"),
    ("decide", {"namespace": "rel", "decision": "maybe"}, "decision must be approve or reject"),
    ("rollback", {"namespace": "rel", "revision": "x"}, "revision must be an integer"),
    ("rollback", {"namespace": "rel", "revision": "0"}, "revision out of range"),
    ("gray/action", {"namespace": "rel", "gray_id": "1", "action": "nuke"},
     "action must be promote or abort"),
    ("gray/create", {"namespace": "rel", "labels": " ".join(["l"] * 101)},
     "at most 100 entries per list"),
    ("draft/discard", {"namespace": "rel", "item_name": "i|port"},
     "item_name needs instance_name"),
])
def test_bad_form_input_is_a_400(client: FlaskClient, path: str, form: dict, why: str) -> None:
    sign_in(client, "ada")
    csrf = page_csrf(client)
    r = client.post(f"/console/releases/{path}", data={**form, "csrf_token": csrf})
    assert (r.status_code, r.headers["x-reason"]) == (400, why)


def test_bad_query_input_is_a_400(client: FlaskClient) -> None:
    sign_in(client, "vera")
    for path, why in (("/console/releases/gray", "namespace is required"),
                      ("/console/releases/gray?namespace=rel&state=odd", "unknown state"),
                      ("/console/releases/gray/one?namespace=rel&id=x",
                       "id must be an integer"),
                      ("/console/releases/gray/one?namespace=rel&id=0", "id out of range")):
        r = client.get(path)
        assert (r.status_code, r.headers["x-reason"]) == (400, why), path


def test_a_gray_release_needs_a_rule(client: FlaskClient) -> None:
    """Said on the page before wuxing is asked (it would refuse it too)."""
    sign_in(client, "otto")
    csrf = page_csrf(client)
    r = client.post("/console/releases/gray/create",
                    data={"namespace": "rel", "clients": " ", "csrf_token": csrf})
    assert r.status_code == 302
    assert "error=name+at+least+one+client" in r.headers["Location"]


def test_wuxing_down_is_a_502_and_the_write_is_audited(down: FlaskClient) -> None:
    from butterfly_canghai import audit

    sign_in(down, "otto")
    for path in ("/console/releases/?namespace=rel", "/console/releases/gray?namespace=rel",
                 "/console/releases/gray/one?namespace=rel&id=1", "/console/releases/"):
        r = down.get(path)
        assert r.status_code == 502, path
        assert r.headers["x-reason"].startswith("wuxing: ERR_CALL_FAILED"), path
    csrf = page_csrf(down)
    r = down.post("/console/releases/publish",
                  data={"namespace": "rel", "message": "m", "csrf_token": csrf})
    assert r.status_code == 502
    _, rows = audit.recent(1, 10, "otto", None)
    entry = next(row for row in rows if row["action"] == "release_publish")
    assert entry["ok"] in (False, 0) and "ERR_CALL_FAILED" in entry["detail"]


def test_release_templates_name_only_known_labels() -> None:
    """Every literal ``t('key')`` of the Releases templates has a Chinese and an English
    label (an unknown key would show as the bare key)."""
    import re
    from pathlib import Path

    from butterfly_canghai.web.i18n import LABELS

    folder = Path(__file__).resolve().parents[1] / "src" / "butterfly_canghai" / "templates"
    used = {key for path in folder.glob("*release*.html")
            for key in re.findall(r"\bt\('([a-z_]+)'[,)]", path.read_text(encoding="utf-8"))}
    assert len(used) > 40
    assert not used - set(LABELS), sorted(used - set(LABELS))
