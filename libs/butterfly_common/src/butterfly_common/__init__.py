"""Butterfly: a plain Python function becomes an HTTP API and a queue topic.

Handlers import what they need from here::

    from butterfly_common import Refusal, Request, api, retstat

    @api
    def hello(req: Request, name: str):
        if not name.isprintable():
            raise Refusal("ERR_BAD_NAME", "name must be printable")
        return retstat.OK, {"name": name}
"""

__version__ = "2.0.0"

from . import retstat
from .decorators import api, download, raw
from .middleware import Middleware
from .refusal import Refusal
from .request import Request

__all__ = ["Middleware", "Refusal", "Request", "__version__", "api", "download", "raw",
           "retstat"]
