"""The envelope HTTP client against a real HTTP server running the sample service."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from werkzeug.serving import make_server

from butterfly_common import runtime
from butterfly_common.httpclient import ERR_CALL_FAILED, CallError, ServiceClient, base_url
from butterfly_common.logs import current_reqid
from butterfly_common.settings import SettingsError, load_settings
from butterfly_common.testing import free_port


@pytest.fixture
def served(make_app) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, make_app(), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_ok_answers_the_envelope(served):
    client = ServiceClient(served)
    assert client.call("/refuse/ok", n=3) == {"stat": "OK", "n": 3, "user": "-"}
    assert client.call("/kinds/echo", a="x", b=2)["b"] == 2


def test_refusals_raise_with_stat_reason_and_status(served):
    client = ServiceClient(served)
    with pytest.raises(CallError) as err:
        client.call("/refuse/classed")
    assert (err.value.stat, err.value.reason, err.value.status) == (
        "ERR_WRONG_STATE", "already running", 409)
    assert err.value.data == {"stat": "ERR_WRONG_STATE", "state": "running"}
    with pytest.raises(CallError, match="ERR_BAD_PARAMS: missing: a"):
        client.call("/kinds/echo")


def test_not_an_envelope_and_unreachable(served):
    with pytest.raises(CallError) as err:
        ServiceClient(served).call("/kinds/raw_text")
    assert err.value.stat == ERR_CALL_FAILED and err.value.status == 201
    with pytest.raises(CallError) as err:
        ServiceClient(f"http://127.0.0.1:{free_port()}", timeout=1).call("/a/b")
    assert err.value.stat == ERR_CALL_FAILED and err.value.status == 0
    assert "ConnectionError" in err.value.reason


def test_timeout(callee):
    with pytest.raises(CallError, match="Timeout"):
        ServiceClient(callee.url, timeout=0.2).call("/slow/one?sleep=2")
    with pytest.raises(CallError, match="Timeout"):
        ServiceClient(callee.url).request("/slow/two?sleep=2", {"a": 1}, timeout=0.2)
    ServiceClient(callee.url, timeout=5).call("/svc/wait", timeout=30)  # a parameter
    assert callee.snapshot()[-1]["body"] == '{"timeout": 30}'


def test_reqid_and_token_travel(callee):
    token = current_reqid.set("A" * 16)
    try:
        client = ServiceClient(callee.url, token="t" * 20)
        assert client.call("/svc/hello", name="x") == {"stat": "OK"}
    finally:
        current_reqid.reset(token)
    ServiceClient(callee.url).call("/svc/anon")
    first, second = callee.snapshot()
    assert first["reqid"] == "A" * 16 and first["headers"]["authorization"] == "Bearer " + "t" * 20
    assert first["body"] == '{"name": "x"}' and first["path"] == "/svc/hello"
    assert second["reqid"] is None and "authorization" not in second["headers"]


def test_base_urls_from_settings(tmp_path):
    runtime.configure(load_settings({"BUTTERFLY_RUQI_URL": "https://ruqi.internal:8443/",
                                     "BUTTERFLY_DATA_DIR": str(tmp_path)}))
    assert base_url("ruqi") == "https://ruqi.internal:8443"
    assert base_url("baichuan") == "http://127.0.0.1:4300"  # the installed service's port
    assert base_url("http://x:1/") == "http://x:1"
    with pytest.raises(SettingsError, match="BUTTERFLY_WUXING_URL"):
        load_settings({"BUTTERFLY_WUXING_URL": "ftp://x"})
    with pytest.raises(ValueError, match="start with"):
        ServiceClient("http://x:1").call("a/b")
