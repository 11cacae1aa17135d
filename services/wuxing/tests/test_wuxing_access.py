"""Writes need authorization; reads are open unless WUXING_READ_TOKEN is set."""

import contextlib

from wuxing_testlib import AUTH, make_section

KEY = {"namespace": "demo", "section_name": "host", "section_version": "v1"}
READ = "wuxing-read-token-0123"


def test_writes_need_a_credential(sqlite_api):
    status, body, reason = sqlite_api.call("section_create", auth=False, **KEY)
    assert (status, body["stat"]) == (401, "ERR_UNAUTHORIZED") and reason
    status, body, _ = sqlite_api.call("section_create", auth=False,
                                      headers={"Authorization": "Bearer wrong-token-xxxxxxx"},
                                      **KEY)
    assert status == 401
    # X-Username from an untrusted peer is ignored
    status, _, _ = sqlite_api.call("section_create", auth=False,
                                   headers={"X-Username": "mallory"}, **KEY)
    assert status == 401
    sqlite_api.ok("section_create", **KEY)
    assert sqlite_api.call("section_list", auth=False)[1]["stat"] == "OK"


def test_a_read_token_closes_reads(fresh, redis_server, sqlite_url):
    with contextlib.contextmanager(fresh)(redis_server.url, sqlite_url,
                                          WUXING_READ_TOKEN=READ) as api:
        make_section(api)
        status, body, reason = api.call("section_get", auth=False, **KEY)
        assert (status, body["stat"]) == (401, "ERR_UNAUTHORIZED") and "READ_TOKEN" in reason
        assert api.call("section_get", auth=False,
                        headers={"Authorization": f"Bearer {READ}"}, **KEY)[1]["stat"] == "OK"
        assert api.call("section_get", headers=AUTH, **KEY)[1]["stat"] == "OK"
        # the read token does not allow writes
        status, _, _ = api.call("section_delete", auth=False,
                                headers={"Authorization": f"Bearer {READ}"}, **KEY)
        assert status == 401


def test_bad_settings_stop_start_up():
    import pytest

    from butterfly_common.settings import SettingsError
    from butterfly_wuxing.config import WuxingConfig

    for env in ({"WUXING_HISTORY_DAYS": "soon"}, {"WUXING_READ_TOKEN": "short"},
                {"WUXING_CACHE": "maybe"}, {"WUXING_WATCH_MAX_CHANGES": "0"}):
        with pytest.raises(SettingsError, match=next(iter(env))):
            WuxingConfig.from_env(env)
    assert WuxingConfig.from_env({}).history_days == 90


def test_legacy_status_answers_every_refusal_with_200(fresh, redis_server, sqlite_url):
    with contextlib.contextmanager(fresh)(redis_server.url, sqlite_url,
                                          BUTTERFLY_LEGACY_STATUS="1") as api:
        status, body, reason = api.call("section_get", **KEY)
        assert (status, body["stat"]) == (200, "ERR_SECTION_IS_NOT_EXIST") and reason
