"""A handler's own role check, for a role that depends on a parameter.

Routes declare their role (``@api(write=True)``, ``role=``) and the framework's RoleCheck
middleware enforces it before the body is read; :func:`require_role` is for the rest
(e.g. baichuan's ``requeue all=true`` needs admin where one message needs operator).
"""

from __future__ import annotations

from . import runtime
from .auth import Identity, check_role, request_identity
from .refusal import Refusal
from .request import Request


def require_role(req: Request, needed: str) -> Identity:
    """The caller's identity, or a :class:`~butterfly_common.Refusal` when it lacks
    ``needed``."""
    settings = runtime.get_settings()
    identity = request_identity(req, settings, runtime.get_redis)
    refused = check_role(identity, needed, settings)
    if refused:
        raise Refusal(refused.stat, refused.reason, http=refused.status)
    return identity
