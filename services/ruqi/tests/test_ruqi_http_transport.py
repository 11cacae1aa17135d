"""The raw transport of HTTP fires: both of its paths (bare http.client for plain URLs,
requests for the rest) and TLS check the address they are connected to before anything is
sent. A fake resolver plays the attack (a name that passes the check, then connects to
127.0.0.1); the target is a real local server that records every call."""

from __future__ import annotations

import json

import pytest

from butterfly_ruqi import http_transport, safety
from butterfly_ruqi.allowlist import AllowList, parse_allow
from butterfly_ruqi.commands import run_command


def _paths(port: int) -> dict[str, tuple[str, bool]]:
    """URL -> (what it stands for, whether it goes by the fast path)."""
    return {f"http://localhost:{port}/plain": ("fast http", True),
            f"http://localhost:{port}/caf\u00e9": ("requests", False),
            f"https://localhost:{port}/tls": ("fast https", True)}


def test_every_path_checks_the_connected_peer(callee, monkeypatch):
    port = int(callee.url.rsplit(":", 1)[1])
    rebinding = AllowList(parse_allow(f"localhost:{port}", {}),
                          resolver=lambda host, p: ["93.184.216.34"])
    monkeypatch.setattr(safety, "current", lambda: safety.Safety(rebinding))
    for url, (kind, fast) in _paths(port).items():
        assert (http_transport._fast_target(url) is not None) is fast, kind
        with pytest.raises(http_transport.ERRORS) as refused:
            http_transport.post(url, {"a": 1}, {}, 5, 100)
        assert "127.0.0.1" in str(refused.value), (kind, refused.value)
        assert "RUQI_HTTP_ALLOW" in str(refused.value), (kind, refused.value)
        out = run_command(url, script_dir=None, timeout=5, reqid="0123456789ABCDEF",
                          job_id="j1", scheduled=1700000000.0)
        assert not out.success and "RUQI_HTTP_ALLOW" in out.output, (kind, out.output)
    assert callee.snapshot() == []


def test_an_allowed_peer_gets_the_post_on_both_paths(callee, monkeypatch):
    port = int(callee.url.rsplit(":", 1)[1])
    allow = AllowList(parse_allow("127.0.0.1", {}))
    monkeypatch.setattr(safety, "current", lambda: safety.Safety(allow))
    for url in list(_paths(port))[:2]:
        answer = http_transport.post(url, {"a": 1}, {"x-reqid": "0123456789ABCDEF"}, 5, 100)
        assert answer.status == 200 and json.loads(answer.raw) == {"stat": "OK"}
    calls = callee.snapshot()
    assert [c["path"] for c in calls] == ["/plain", "/caf%C3%A9"]
    assert all(c["body"] == '{"a": 1}' and c["reqid"] == "0123456789ABCDEF" for c in calls)
