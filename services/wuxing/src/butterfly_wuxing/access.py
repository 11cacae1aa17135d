"""Read access: open, unless ``WUXING_READ_TOKEN`` is set.

With a read token, a read needs ``Authorization: Bearer <read token>``, or any credential
that may write (admin or operator token, or a user a trusted proxy authenticated). Writes
are guarded by the framework (``@api(write=True)``).
"""

from __future__ import annotations

import hmac

from butterfly_common import runtime
from butterfly_common.request import Request
from butterfly_common.runtime import get_config

from .config import WuxingConfig
from .errors import WuxingError


def check_read(req: Request) -> None:
    token = get_config(WuxingConfig).read_token
    if not token:
        return
    if req.username and req.username != "-":
        return
    scheme, _, given = (req.headers.get("Authorization") or "").partition(" ")
    given = given.strip()
    if scheme.lower() == "bearer" and given:
        settings = runtime.get_settings()
        for allowed in (token, settings.admin_token, getattr(settings, "operator_token", "")):
            if allowed and hmac.compare_digest(given.encode(), allowed.encode()):
                return
    raise WuxingError("ERR_UNAUTHORIZED", "reads need Authorization: Bearer <WUXING_READ_TOKEN>",
                      http=401)
