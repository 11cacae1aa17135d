"""demo_api: the smallest JSON handlers; copy this package to start your own app."""

import secrets

from butterfly_common import Request, api, retstat


@api
def ping(req: Request):
    """Answer OK with a random string: the handler path is alive."""
    req.log_params["x"] = 1
    return retstat.OK, {"randstr": secrets.token_hex(8)}


@api
def hello(req: Request, str_info: str):
    """Echo ``str_info`` back, with a response header of the app's own."""
    return retstat.OK, {"str_info": str_info}, [("demo", "1.0.1")]


@api
def collect(req, all_taskdata: list | None = None):
    """Gather the results of earlier steps (a flow's ``all_taskdata``) into one answer:
    the last task of xingqiao's ``hello`` demo flow, which the original called but never had."""
    items = [item for item in (all_taskdata or []) if isinstance(item, dict)]
    merged = {k: v for item in items for k, v in item.items() if k != "stat"}
    return retstat.OK, {"data": {"count": len(items), "merged": merged}}
