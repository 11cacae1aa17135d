"""The services of the fleet with their instances, routes and traffic: one view for the
console's services page and the ``/canghai/service_list`` API.

A service is listed when the fleet names it (fleet.toml, or the installed services) or it
announces itself (``butterfly_common.announce``). Its routes are the ones its instances
announce, plus any route the sampler saw traffic on (a service too old to announce);
calls and errors per route come from the sampled traffic (``traffic.py``).
"""

from __future__ import annotations

from typing import Any

from butterfly_common.runtime import get_redis

from . import fleet, traffic
from .config import CanghaiConfig

#: the traffic window of the listing (minutes)
WINDOW = 60


def services(cfg: CanghaiConfig, minutes: int = WINDOW) -> list[dict[str, Any]]:
    """One row per service, by name: ``name``, ``announced`` (found only through its
    announcement), ``instances`` (name, url, state, version), ``routes`` (path, kind,
    role, calls, errors over the last ``minutes``) and the service's ``calls`` /
    ``errors``."""
    states = {row["name"]: row for row in fleet.probe_all(cfg)}
    instances = fleet.instances(cfg)
    routes: dict[str, dict[str, dict[str, Any]]] = {}
    for entry in fleet.announcements():
        mine = routes.setdefault(str(entry["service"]), {})
        for r in entry.get("routes") or []:
            if isinstance(r, dict) and isinstance(r.get("path"), str):
                mine.setdefault(r["path"], {"path": r["path"], "kind": r.get("kind"),
                                            "role": r.get("role"), "calls": 0, "errors": 0})
    _, hashes = traffic.read(get_redis(), minutes)
    for row in traffic.summarize(hashes, minutes * 60.0):
        mine = routes.setdefault(row["service"], {})
        route = mine.setdefault(row["route"], {"path": row["route"], "kind": None,
                                               "role": None, "calls": 0, "errors": 0})
        route["calls"] += row["calls"]
        route["errors"] += row["errors"]
    names = sorted({inst.service for inst in instances} | set(routes))
    out = []
    for name in names:
        insts = [inst for inst in instances if inst.service == name]
        rows = sorted(routes.get(name, {}).values(), key=lambda r: r["path"])
        out.append({
            "name": name,
            "announced": bool(insts) and all(inst.announced for inst in insts),
            "instances": [{"name": inst.name, "url": inst.url,
                           "state": states.get(inst.name, {}).get("state", "unknown"),
                           "version": states.get(inst.name, {}).get("version", "-")}
                          for inst in insts],
            "routes": rows, "calls": sum(r["calls"] for r in rows),
            "errors": sum(r["errors"] for r in rows)})
    return out
