"""``@api``, ``@raw`` and ``@download``: mark a function as a route without wrapping it.

The decorator only attaches a :class:`HandlerSpec`; the function stays a plain function,
so it can be called directly in tests and by ``butterfly call``. Undecorated functions are
never routes, even when their first parameter is ``req``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, overload

F = TypeVar("F", bound=Callable[..., Any])
Kind = Literal["api", "raw", "download"]

SPEC_ATTR = "__butterfly__"


@dataclass(frozen=True)
class HandlerSpec:
    """How a handler speaks: its protocol and its access rules."""

    kind: Kind
    #: Needs the ``admin`` role (the admin token, an admin's JWT or a trusted proxy's
    #: ``X-Role: admin``); never served as a queue topic.
    admin: bool = False
    #: Changes state (ruqi's job control...): needs :attr:`role` (auth.check_role); never
    #: served as a queue topic.
    write: bool = False
    #: Served as a queue topic when the service consumes (``@api`` handlers only).
    topic: bool = True
    #: For ``@api``: HTTP status to answer for a returned stat (default 200).
    statuses: Mapping[str, int] = field(default_factory=dict)
    #: For ``@download``: the directory files are served from; None means the data dir.
    root: str | None = None
    #: The role a caller needs (``operator`` for write routes unless declared, ``admin``
    #: for admin routes and destructive writes), None for a read.
    role: str | None = None
    #: Open whatever ``BUTTERFLY_READ_AUTH`` says (a queue-only notice, a sign-in).
    public: bool = False
    #: For ``@api``: the media type of the streamed answer (``protocol.Stream``) the
    #: handler may give instead of its envelope (documented in /openapi.json), or None.
    stream: str | None = None


ROLES = ("viewer", "operator", "admin")


def _needed(admin: bool, write: bool, role: str | None) -> str | None:
    """The role a route needs from its flags (None: a read open to the read policy)."""
    if role is not None and role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    if admin:
        return "admin"
    if role is not None:
        return role
    return "operator" if write else None


def _mark(func: F, spec: HandlerSpec) -> F:
    setattr(func, SPEC_ATTR, spec)
    return func


def spec_of(func: Callable[..., Any]) -> HandlerSpec | None:
    """The spec a decorator attached to ``func``, or None for a plain function."""
    return getattr(func, SPEC_ATTR, None)


@overload
def api(func: F) -> F: ...
@overload
def api(*, admin: bool = False, write: bool = False, topic: bool = True,
        statuses: Mapping[str, int] | None = None,
        role: str | None = None, public: bool = False,
        stream: str | None = None) -> Callable[[F], F]: ...


def api(func: F | None = None, *, admin: bool = False, write: bool = False,
        topic: bool = True, statuses: Mapping[str, int] | None = None,
        role: str | None = None, public: bool = False,
        stream: str | None = None) -> F | Callable[[F], F]:
    """A JSON handler: returns ``stat``, ``(stat, data)`` or ``(stat, data, headers)``.

    ``write=True`` marks a state-changing action that needs ``role`` (default
    ``operator``; ``role="admin"`` for destructive ones: remove, delete, purge), see
    :mod:`butterfly_common.auth`; like ``admin=True`` (role admin) it is never a queue
    topic, since a queue message carries no credentials. ``public=True`` keeps a route
    without a role open whatever ``BUTTERFLY_READ_AUTH`` says. ``stream`` is the media
    type of the ``protocol.Stream`` the handler may return (never a queue topic then).
    """
    needed = _needed(admin, write, role)
    spec = HandlerSpec("api", admin=admin, write=write or needed is not None,
                       topic=topic and needed is None and stream is None,
                       statuses=dict(statuses or {}), role=needed,
                       public=public and needed is None, stream=stream)
    return _mark(func, spec) if func is not None else (lambda f: _mark(f, spec))


@overload
def raw(func: F) -> F: ...
@overload
def raw(*, admin: bool = False) -> Callable[[F], F]: ...


def raw(func: F | None = None, *, admin: bool = False) -> F | Callable[[F], F]:
    """A handler that picks its own HTTP status: returns ``code`` or ``(code, body[, headers])``."""
    spec = HandlerSpec("raw", admin=admin, topic=False, role=_needed(admin, False, None))
    return _mark(func, spec) if func is not None else (lambda f: _mark(f, spec))


@overload
def download(func: F) -> F: ...
@overload
def download(*, root: str | None = None, admin: bool = False) -> Callable[[F], F]: ...


def download(func: F | None = None, *, root: str | None = None,
             admin: bool = False) -> F | Callable[[F], F]:
    """A file handler: returns ``(stat, {"filename": relpath, "is_download": bool}[, headers])``.

    ``filename`` is resolved inside ``root`` (default: the service's data dir); a path that
    escapes it is refused before the file system is touched.
    """
    spec = HandlerSpec("download", admin=admin, topic=False, root=root,
                       role=_needed(admin, False, None))
    return _mark(func, spec) if func is not None else (lambda f: _mark(f, spec))
