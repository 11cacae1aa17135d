"""Butterfly: a plain Python function becomes an HTTP API and a queue topic.

Handlers import what they need from here::

    from butterfly_common import api, retstat

    @api
    def hello(req, name: str):
        return retstat.OK, {"name": name}
"""

__version__ = "2.0.0"

from . import retstat
from .decorators import api, download, raw
from .refusal import Refusal

__all__ = ["Refusal", "__version__", "api", "download", "raw", "retstat"]
