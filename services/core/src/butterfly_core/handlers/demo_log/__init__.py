"""demo_log: read the log levels, and (admin only) change one at run time."""

import logging

from butterfly_common import Request, api, retstat

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@api
def loglevel_get(req: Request, logger: str = ""):
    """The level of ``logger`` (the root logger when empty)."""
    return retstat.OK, {"logger": logger or "root",
                        "level": logging.getLevelName(logging.getLogger(logger or None).level)}


@api(admin=True)
def loglevel_set(req: Request, level: str, logger: str = ""):
    """Set ``logger``'s level in this worker process (admin token required)."""
    level = level.upper()
    if level not in LEVELS:
        req.error_str = f"level must be one of {', '.join(LEVELS)}"
        return retstat.ERR_BAD_PARAMS
    logging.getLogger(logger or None).setLevel(level)
    req.log_res.add(f"loglevel={level}")
    return retstat.OK, {"logger": logger or "root", "level": level}
