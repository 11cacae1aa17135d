"""Helpers of ruqi's engine tests (a module with a unique name, importable anywhere): a
simulated clock and the history rows of a job."""

from __future__ import annotations

from butterfly_common import db
from butterfly_ruqi.models import History


class SimClock:
    """Epoch seconds that move only when a test sets ``t`` (the engine's ``clock``)."""

    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def rows(job_id: str) -> list[History]:
    """The job's history rows, oldest scheduled time first."""
    with db.database.connection_context():
        return list(History.select().where(History.job_id == job_id)
                    .order_by(History.scheduled_time))
