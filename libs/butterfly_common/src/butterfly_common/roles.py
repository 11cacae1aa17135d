"""Who calls a handler, and its own role check for a role that depends on a parameter.

Routes declare their role (``@api(write=True)``, ``role=``) and the framework's RoleCheck
middleware enforces it before the body is read; :func:`require_role` is for the rest
(e.g. baichuan's ``requeue all=true`` needs admin where one message needs operator).
"""

from __future__ import annotations

from . import runtime
from .auth import Identity, check_role, request_identity
from .refusal import Refusal
from .request import Request


def identity_of(req: Request) -> Identity:
    """Who is calling (resolved once per request, with this process's settings): a token's
    role, a huoyan JWT's user, a trusted proxy's ``X-Username``; queue calls anonymous."""
    return request_identity(req, runtime.get_settings(), runtime.get_redis)


def require_role(req: Request, needed: str) -> Identity:
    """The caller's identity, or a :class:`~butterfly_common.Refusal` when it lacks
    ``needed``."""
    identity = identity_of(req)
    refused = check_role(identity, needed, runtime.get_settings())
    if refused:
        raise Refusal(refused.stat, refused.reason, http=refused.status)
    return identity
