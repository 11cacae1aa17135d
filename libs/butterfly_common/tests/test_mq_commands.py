"""Static guard: the mq package uses no command Twemproxy rejects.

Twemproxy answers an unsupported command by closing the connection, which redis-py
reports as a network error after retrying: much easier to catch here than in production.
"""

from __future__ import annotations

import re
from pathlib import Path

import butterfly_common.mq as mq

PKG = Path(mq.__file__).parent

FORBIDDEN = [
    "MULTI", "EXEC", "WATCH", "UNWATCH", "DISCARD", "BLPOP", "BRPOP", "BLMOVE",
    "BRPOPLPUSH", "BZPOPMIN", "BZPOPMAX", "BLMPOP", "BZMPOP", "PUBLISH", "SUBSCRIBE",
    "PSUBSCRIBE", "UNSUBSCRIBE", "PUBSUB", "SPUBLISH", "XADD", "XREAD", "XREADGROUP",
    "XRANGE", "XREVRANGE", "XACK", "XGROUP", "XLEN", "XTRIM", "XDEL", "XCLAIM", "XAUTOCLAIM",
    "XPENDING", "XINFO", "KEYS", "SCAN", "INFO", "SELECT", "CLIENT", "SCRIPT", "RENAME",
    "RENAMENX", "TIME", "ECHO", "DBSIZE", "MSETNX", "OBJECT", "FUNCTION", "FCALL", "ZMPOP",
    "LMPOP", "SINTERCARD", "EVAL_RO", "EVALSHA_RO", "WAIT", "CONFIG", "FLUSHDB", "FLUSHALL",
    "RPOPLPUSH", "LMOVE", "SMOVE",
]
# redis-py spellings of the above (method names on a client or pipeline)
FORBIDDEN_METHODS = sorted({c.lower() for c in FORBIDDEN} | {
    "pubsub", "register_script", "script_load", "script_exists", "script_flush",
    "client_setname", "client_list", "client_info", "client_id", "config_get", "scan_iter",
    "hscan", "sscan", "zscan", "hscan_iter", "sscan_iter", "zscan_iter", "transaction",
    "lock", "monitor",
})
# the redis-py receivers used in the package
RECEIVER = r"\b(?:client|pipe|self\.client|redis|r|conn)"
METHOD_RE = re.compile(RECEIVER + r"\.(" + "|".join(FORBIDDEN_METHODS) + r")\s*\(")
LUA_RE = re.compile(r"redis\.p?call\(\s*['\"](\w+)['\"]", re.IGNORECASE)
RAW_RE = re.compile(r"execute_command\(\s*['\"](\w+)", re.IGNORECASE)
PIPELINE_RE = re.compile(r"\.pipeline\(([^)]*)\)")
# multi-key commands: keys of different tags would be split (Cluster) or misplaced/miscounted
# (Twemproxy); the package must call them with exactly one key
MULTI_KEY_RE = re.compile(RECEIVER + r"\.(mget|mset|unlink|touch|sunionstore|zunionstore|"
                          r"zinterstore|sinterstore|sdiffstore)\s*\(")
ONE_KEY_RE = re.compile(RECEIVER + r"\.(delete|exists)\(([^()]*)\)")


def sources(suffix: str) -> list[Path]:
    files = sorted(PKG.glob(f"*{suffix}"))
    assert files, f"no {suffix} files under {PKG}"
    return files


def test_python_uses_no_forbidden_client_method() -> None:
    hits = [f"{p.name}: {m.group(0)}" for p in sources(".py")
            for m in METHOD_RE.finditer(p.read_text())]
    hits += [f"{p.name}: {m.group(0)}" for p in sources(".py")
             for m in RAW_RE.finditer(p.read_text()) if m.group(1).upper() in FORBIDDEN]
    assert hits == []


def test_no_multi_key_commands() -> None:
    hits = [f"{p.name}: {m.group(0)}" for p in sources(".py")
            for m in MULTI_KEY_RE.finditer(p.read_text())]
    hits += [f"{p.name}: {m.group(0)}" for p in sources(".py")
             for m in ONE_KEY_RE.finditer(p.read_text()) if "," in m.group(2) or "*" in m.group(2)]
    assert hits == []


def test_pipelines_are_never_transactional() -> None:
    calls = [(p.name, m.group(1)) for p in sources(".py")
             for m in PIPELINE_RE.finditer(p.read_text())]
    assert calls, "expected pipelines in the package"
    assert [c for c in calls if "transaction=False" not in c[1]] == []


def test_lua_uses_only_proxy_safe_commands() -> None:
    used: dict[str, set[str]] = {}
    for p in sources(".lua"):
        for m in LUA_RE.finditer(p.read_text()):
            used.setdefault(m.group(1).upper(), set()).add(p.name)
    assert used, "expected redis.call in the scripts"
    bad = {cmd: files for cmd, files in used.items() if cmd in FORBIDDEN and cmd != "TIME"}
    assert bad == {}
    # TIME is only legal inside Lua (server clock), and only in the shared prelude
    assert used.get("TIME", set()) <= {"_prelude.lua"}


def test_guard_catches_offenders() -> None:
    """The regexes themselves must fire on the forms they are meant to catch."""
    assert METHOD_RE.search("self.client.keys('bc:*')")
    assert METHOD_RE.search("pipe.multi()")
    assert METHOD_RE.search("client.blpop(k, 1)")
    assert not METHOD_RE.search("self.client.zrange(k, 0, -1)")
    assert LUA_RE.search("redis.call('KEYS', '*')").group(1) == "KEYS"
    assert LUA_RE.search('redis.pcall("rename", a, b)').group(1).upper() == "RENAME"
    assert RAW_RE.search("client.execute_command('INFO')")
    assert MULTI_KEY_RE.search("self.client.mget(a, b)")
    m = ONE_KEY_RE.search("pipe.delete(a, b)")
    assert m and "," in m.group(2)
