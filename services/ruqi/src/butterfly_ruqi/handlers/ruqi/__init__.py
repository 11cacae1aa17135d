"""ruqi: the scheduler's API, with the original's names and parameters.

The names the original admin UI calls (``job_list``, ``job_add``, ...) are aliases of the
same handlers (see the end of this module), so both name sets are real routes with identical
parameters and answers.

Job control (add, modify, remove, pause, resume, run, wakeup) is a write action
(``@api(write=True)``): it needs the operator role (removal: admin, as in the console's
role table), from a token, a huoyan JWT or a trusted proxy's ``X-Username`` and
``X-Role``, and it is never a queue topic. Refusals are ``Refusal``s: 400, 404 for an
unknown job, 409 for a duplicate (200 with ``BUTTERFLY_LEGACY_STATUS=1``).
"""

import time

from butterfly_common import Request, api, retstat
from butterfly_common.roles import identity_of
from butterfly_ruqi import jobs, runner
from butterfly_ruqi.jobs import Options
from butterfly_ruqi.models import format_ts


#: HTTP statuses of the refusals that are not a plain 400 (also listed in /openapi.json).
def _options(timezone, misfire_grace_time, coalesce, overlap, timeout, wait_result,
             pause_on_failure, start_at, end_at, jitter, catchup_window) -> Options:
    return Options(timezone=timezone, misfire_grace_time=misfire_grace_time,
                   coalesce=coalesce, overlap=overlap, timeout=timeout,
                   wait_result=wait_result, pause_on_failure=pause_on_failure,
                   start_at=start_at, end_at=end_at, jitter=jitter,
                   catchup_window=catchup_window)


@api
def get_jobs(req: Request, job_id: str | None = None, job_name: str | None = None,
             page_index: int = 1, page_size: int = 15, orderBy: str | None = None,
             orderDir: str | None = None):
    """List jobs, newest first, one page (``page_index`` from 1); ``orderBy`` a column name,
    ``orderDir`` asc|desc (what the original admin UI sends when a header is clicked)."""
    return retstat.OK, {"data": jobs.list_jobs(job_id, job_name, page_index, page_size,
                                               orderBy, orderDir)}


@api
def get_job(req: Request, job_id: str):
    """One job, with its next run time (null when paused) and ``next_runs`` (the next
    five, jitter applied)."""
    return retstat.OK, {"data": jobs.get_job(job_id)}


@api(write=True)
def add_job(req: Request, job_trigger: str, job_id: str, job_name: str, cmd: str, rule: str,
            timezone: str | None = None, misfire_grace_time: int | None = None,
            coalesce: bool | None = None, overlap: str | None = None,
            timeout: float | None = None, wait_result: bool | None = None,
            pause_on_failure: int | None = None, start_at: str | None = None,
            end_at: str | None = None, jitter: float | None = None,
            catchup_window: int | None = None):
    """Add a cron / interval / date job; every replica schedules it within a second.
    ``pause_on_failure`` (0..1000: pause after that many consecutive failed runs),
    ``start_at`` / ``end_at`` (``YYYY-MM-DD HH:MM:SS`` in the job's zone: no fire outside),
    ``jitter`` (0..3600 s: each fire is delayed by a deterministic amount up to it),
    ``catchup_window`` (0..604800 s, 0 = the misfire grace: after an outage or a pause,
    run times that recent still run, each once, in order; older ones are recorded
    ``missed``)."""
    data = jobs.add_job(job_trigger, job_id, job_name, cmd, rule,
                        _options(timezone, misfire_grace_time, coalesce, overlap, timeout,
                                 wait_result, pause_on_failure, start_at, end_at, jitter,
                                 catchup_window))
    req.log_res.add(f"job_id={job_id}")
    return retstat.OK, {"data": data}


@api(write=True)
def modify_job(req: Request, job_trigger: str, job_id: str, job_name: str, cmd: str, rule: str,
               timezone: str | None = None, misfire_grace_time: int | None = None,
               coalesce: bool | None = None, overlap: str | None = None,
               timeout: float | None = None, wait_result: bool | None = None,
               pause_on_failure: int | None = None, start_at: str | None = None,
               end_at: str | None = None, jitter: float | None = None,
               catchup_window: int | None = None):
    """Replace a job's definition; its next run is recomputed from the new rule. Options
    not given keep their value; ``start_at=""`` / ``end_at=""`` remove a bound."""
    data = jobs.modify_job(job_trigger, job_id, job_name, cmd, rule,
                           _options(timezone, misfire_grace_time, coalesce, overlap, timeout,
                                    wait_result, pause_on_failure, start_at, end_at, jitter,
                                    catchup_window))
    req.log_res.add(f"job_id={job_id}")
    return retstat.OK, {"data": data}


@api(write=True, role="admin")
def remove_job(req: Request, job_id: str):
    """Delete a job (its history stays until retention removes it)."""
    jobs.remove_job(job_id)
    return retstat.OK


@api(write=True)
def pause_job(req: Request, job_id: str, note: str | None = None):
    """Stop firing a job on every replica until it is resumed; ``note`` (up to 500
    characters) says why, stored with the caller's name (a token's kind, e.g.
    ``operator-token``, when the caller has no name) and the time."""
    identity = identity_of(req)
    by = identity.username if identity.username != "-" else identity.via
    jobs.pause_job(job_id, note=note, by=by)
    return retstat.OK


@api(write=True)
def resume_job(req: Request, job_id: str):
    """Resume a paused job from now; a job with no run left is removed, as the original."""
    return retstat.OK, {"data": jobs.resume_job(job_id)}


@api(write=True)
def run_job(req: Request, job_id: str):
    """Fire a job now, once, on whichever replica picks it up (its reqid is this call's)."""
    return retstat.OK, {"data": jobs.run_job(job_id, req.reqid)}


@api(write=True)
def backfill_job(req: Request, job_id: str, start: str, end: str, overlap: str | None = None,
                 dry_run: bool = False):
    """Run the fires of a past range again: every slot of the job's schedule from
    ``start`` to ``end`` (``YYYY-MM-DD HH:MM:SS`` in the job's zone, or with an offset;
    ``end`` not in the future), each with its own scheduled time (jitter applied) and fire
    key, under ``overlap`` (default: the job's). Idempotent: a slot a backfill already ran
    is not run again. At most 10,000 slots per call (more: ERR_BAD_JOB). ``dry_run``:
    list the slots (``slot_times``, ``already_run_times``) and run nothing. History rows
    say ``[backfill]``."""
    data = jobs.backfill_job(job_id, start, end, overlap=overlap, dry_run=dry_run,
                             reqid=req.reqid)
    req.log_res.add(f"job_id={job_id} slots={data['slots']} to_run={data['to_run']}")
    return retstat.OK, {"data": data}


@api
def get_history(req: Request, job_id: str | None = None, job_name: str | None = None,
                is_success: str | None = None, page_index: int = 1, page_size: int = 15,
                orderBy: str | None = None, orderDir: str | None = None):
    """Run history, newest first, one page; ``is_success=yes|no`` filters by outcome;
    ``orderBy`` / ``orderDir`` sort by an allow-listed column."""
    return retstat.OK, {"data": jobs.list_history(job_id, job_name, is_success, page_index,
                                                  page_size, orderBy, orderDir)}


@api
def check_rule(req: Request, job_trigger: str, rule: str, timezone: str | None = None,
               count: int = 5, job_id: str | None = None, overlap: str | None = None,
               pause_on_failure: int | None = None, start_at: str | None = None,
               end_at: str | None = None, jitter: float | None = None,
               catchup_window: int | None = None, timeout: float | None = None,
               misfire_grace_time: int | None = None):
    """Check a rule as ``add_job`` would, without saving anything: the stored form and the
    next ``count`` (1..20) fire times, or the same refusal add_job would give. Given any
    option (``overlap`` ... ``misfire_grace_time``) the options are checked as add_job
    checks them (the command aside), the times respect ``start_at`` / ``end_at`` and,
    given the ``job_id``, include the jitter; ``options`` echoes what would be stored."""
    given = (overlap, pause_on_failure, start_at, end_at, jitter, catchup_window, timeout,
             misfire_grace_time)
    opts = None
    if any(v is not None for v in given):
        opts = _options(timezone, misfire_grace_time, None, overlap, timeout, None,
                        pause_on_failure, start_at, end_at, jitter, catchup_window)
    return retstat.OK, {"data": jobs.check_rule(job_trigger, rule, timezone, count,
                                                opts=opts, job_id=job_id)}


@api
def status(req: Request):
    """The original's ``wait_seconds`` / ``check_time`` / ``next_wakeup_time`` plus engines."""
    engines = [engine.status() for engine in runner.ENGINES]
    now = time.time()
    if engines:
        first = min((e for e in engines if e["next_wakeup_time"]),
                    key=lambda e: e["next_wakeup_time"], default=engines[0])
        nxt, check = first["next_wakeup_time"], first["check_time"]
    else:
        nxt, check = jobs.next_wakeup(), None
    data = {
        "wait_seconds": round(max(0.0, nxt - now), 3) if nxt else None,
        "check_time": format_ts(check) if check else None,
        "next_wakeup_time": format_ts(nxt),
        "engines": engines,
    }
    return retstat.OK, {"data": data}


@api(write=True)
def wakeup(req: Request):
    """Make every replica re-read the jobs now."""
    jobs.announce()
    for engine in runner.ENGINES:
        engine.wakeup()
    return retstat.OK


# -- the names the original admin UI calls --------------------------------------------------
# Discovery registers a route per module attribute, so an alias is simply another name for
# the same handler: same parameters, same answers, its own path.

job_list = get_jobs
job_show = get_job
job_add = add_job
job_modify = modify_job
job_remove = remove_job
job_pause = pause_job
job_resume = resume_job
job_history_list = get_history
