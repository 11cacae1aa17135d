"""The request page links a reqid's traces to the tracing backend (``CANGHAI_TRACE_URL``):
the trace ids come from the access lines the services append them to."""

from __future__ import annotations

import pytest
from canghai_helpers import sign_in

from butterfly_common.config import SettingsError

REQID = "0E1F00C0FFEE00AA"
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def write_line(tmp_path, trace: str | None) -> None:
    log = tmp_path / "log" / "core"
    log.mkdir(parents=True, exist_ok=True)
    tail = f"\ttrace_id:{trace}\tspan_id:00f067aa0ba902b7" if trace else ""
    (log / "acc.log").write_text(
        f"2026-12-07 10:00:00\t1\taccess:0\t127.0.0.1\t{REQID}\tGET\t/demo_api/ping\t"
        f"cost:0.001\tstat:OK\tuser:-\ttalk:\tparams:\terror_msg:\tres:{tail}\n",
        encoding="utf-8")


def viewer(app_for, **env):
    from butterfly_canghai import users

    app = app_for(**env)
    users.add_user("vera", "pw-vera-123456", "viewer")
    client = app.test_client()
    sign_in(client, "vera", "pw-vera-123456")
    return client


def test_a_trace_id_in_the_lines_links_to_the_backend(app_for, tmp_path):
    write_line(tmp_path, TRACE)
    client = viewer(app_for, CANGHAI_TRACE_URL="https://traces.example/trace/{trace_id}")
    html = client.get(f"/console/search?reqid={REQID}").text
    assert f'href="https://traces.example/trace/{TRACE}"' in html
    assert 'id="found-traces"' in html


def test_without_a_template_the_id_is_shown_with_how_to_link_it(app_for, tmp_path):
    write_line(tmp_path, TRACE)
    html = viewer(app_for).get(f"/console/search?reqid={REQID}").text
    assert TRACE in html and "CANGHAI_TRACE_URL" in html and "traces.example" not in html


def test_lines_without_tracing_show_no_trace_section(app_for, tmp_path):
    write_line(tmp_path, None)
    html = viewer(app_for).get(f"/console/search?reqid={REQID}").text
    assert 'id="found-lines"' in html and 'id="found-traces"' not in html


@pytest.mark.parametrize("bad", ["javascript:alert(1)//{trace_id}", "https://t.example/",
                                 "https://t.example/{trace_id}/{span_id}"])
def test_a_bad_template_stops_start_up_naming_it(app_for, bad):
    with pytest.raises(SettingsError, match="CANGHAI_TRACE_URL"):
        app_for(CANGHAI_TRACE_URL=bad)
