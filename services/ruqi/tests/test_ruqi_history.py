"""History retention by age and by count per job, applied by the engine on its own."""

from __future__ import annotations

import datetime as dt

from butterfly_common import db
from butterfly_common.testing import wait_until
from butterfly_ruqi.history import prune
from butterfly_ruqi.models import History


def rows(job_id: str, n: int, days_old: float = 0.0) -> None:
    c_time = dt.datetime.now() - dt.timedelta(days=days_old)
    with db.database.connection_context():
        History.insert_many([{
            "job_id": job_id, "job_name": "n", "cmd": "x", "status": "ok",
            "cmd_is_success": True, "cmd_output": "", "cmd_cost": 0.0,
            "scheduled_time": float(i), "scheduler_name": "t", "reqid": "0" * 16,
            "c_time": c_time} for i in range(n)]).execute()


def counts() -> dict[str, int]:
    with db.database.connection_context():
        out: dict[str, int] = {}
        for row in History.select(History.job_id):
            out[row.job_id] = out.get(row.job_id, 0) + 1
        return out


def test_prune_by_age_and_count(env):
    rows("old", 5, days_old=40)
    rows("many", 25)
    rows("few", 3)
    removed = prune(max_age_days=30, max_per_job=10)
    assert removed == 5 + 15
    assert counts() == {"many": 10, "few": 3}
    with db.database.connection_context():
        kept = sorted(r.scheduled_time for r in History.select().where(History.job_id == "many"))
    assert kept == [float(i) for i in range(15, 25)], "the newest rows are kept"


def test_engine_applies_retention_automatically(sqlite_env, engines):
    rows("auto", 12)
    rows("aged", 2, days_old=3)
    engines.start(1, history_prune_interval=1.0, history_max_per_job=4,
                  history_max_age_days=1.0)
    wait_until(lambda: counts() == {"auto": 4}, timeout=5, what="retention applied")
