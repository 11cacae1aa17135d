"""stackdump: write every thread's stack to the error log (admin only), for stuck workers."""

import logging
import sys
import threading
import traceback

from butterfly_common import Request, api, retstat

log = logging.getLogger("butterfly.stack")


@api(admin=True)
def stackdump(req: Request) -> tuple[str, dict]:
    """Log the stack of every thread of this worker and say how many there were."""
    names = {t.ident: t.name for t in threading.enumerate()}
    frames = sys._current_frames()
    for ident, frame in frames.items():
        stack = "".join(traceback.format_stack(frame))
        log.warning("%s thread=%s ident=%s\n%s", req.reqid, names.get(ident, "?"), ident, stack)
    return retstat.OK, {"threads": len(frames)}
