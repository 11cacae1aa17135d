"""ruqi: the scheduler's API, with the original's names and parameters.

The names the original admin UI calls (``job_list``, ``job_add``, ...) are aliases of the
same handlers (see the end of this module), so both name sets are real routes with identical
parameters and answers.
"""

import time

from butterfly_common import api, retstat
from butterfly_ruqi import jobs, runner
from butterfly_ruqi.jobs import JobError, Options
from butterfly_ruqi.models import format_ts


def _refuse(req, exc: JobError):
    req.error_str = exc.reason
    return exc.stat, {}


def _save(req, save, job_trigger: str, job_id: str, job_name: str, cmd: str, rule: str,
          options: Options):
    """add_job / modify_job: run ``save``, answer the job or the refusal."""
    try:
        data = save(job_trigger, job_id, job_name, cmd, rule, options)
    except JobError as exc:
        return _refuse(req, exc)
    req.log_res.add(f"job_id={job_id}")
    return retstat.OK, {"data": data}


def _options(timezone, misfire_grace_time, coalesce, overlap, timeout, wait_result) -> Options:
    return Options(timezone=timezone, misfire_grace_time=misfire_grace_time,
                   coalesce=coalesce, overlap=overlap, timeout=timeout,
                   wait_result=wait_result)


@api
def get_jobs(req, job_id: str | None = None, job_name: str | None = None,
             page_index: int | None = None, page_size: int = 15):
    """List jobs, newest first; paginated when ``page_index`` is given."""
    return retstat.OK, {"data": jobs.list_jobs(job_id, job_name, page_index, page_size)}


@api
def get_job(req, job_id: str):
    """One job, with its next run time (null when paused)."""
    try:
        return retstat.OK, {"data": jobs.get_job(job_id)}
    except JobError as exc:
        return _refuse(req, exc)


@api
def add_job(req, job_trigger: str, job_id: str, job_name: str, cmd: str, rule: str,
            timezone: str | None = None, misfire_grace_time: int | None = None,
            coalesce: bool | None = None, overlap: str | None = None,
            timeout: float | None = None, wait_result: bool | None = None):
    """Add a cron / interval / date job; every replica schedules it within a second."""
    return _save(req, jobs.add_job, job_trigger, job_id, job_name, cmd, rule,
                 _options(timezone, misfire_grace_time, coalesce, overlap, timeout, wait_result))


@api
def modify_job(req, job_trigger: str, job_id: str, job_name: str, cmd: str, rule: str,
               timezone: str | None = None, misfire_grace_time: int | None = None,
               coalesce: bool | None = None, overlap: str | None = None,
               timeout: float | None = None, wait_result: bool | None = None):
    """Replace a job's definition; its next run is recomputed from the new rule."""
    return _save(req, jobs.modify_job, job_trigger, job_id, job_name, cmd, rule,
                 _options(timezone, misfire_grace_time, coalesce, overlap, timeout, wait_result))


@api
def remove_job(req, job_id: str):
    """Delete a job (its history stays until retention removes it)."""
    try:
        jobs.remove_job(job_id)
    except JobError as exc:
        return _refuse(req, exc)
    return retstat.OK


@api
def pause_job(req, job_id: str):
    """Stop firing a job on every replica until it is resumed."""
    try:
        jobs.pause_job(job_id)
    except JobError as exc:
        return _refuse(req, exc)
    return retstat.OK


@api
def resume_job(req, job_id: str):
    """Resume a paused job from now; a job with no run left is removed, as the original."""
    try:
        return retstat.OK, {"data": jobs.resume_job(job_id)}
    except JobError as exc:
        return _refuse(req, exc)


@api
def run_job(req, job_id: str):
    """Fire a job now, once, on whichever replica picks it up (its reqid is this call's)."""
    try:
        return retstat.OK, {"data": jobs.run_job(job_id, req.reqid)}
    except JobError as exc:
        return _refuse(req, exc)


@api
def get_history(req, job_id: str | None = None, job_name: str | None = None,
                is_success: str | None = None, page_index: int | None = None,
                page_size: int = 15):
    """Run history, newest first; ``is_success=yes|no`` filters by outcome."""
    return retstat.OK, {"data": jobs.list_history(job_id, job_name, is_success, page_index,
                                                  page_size)}


@api
def status(req):
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


@api
def wakeup(req):
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
