"""The services page: every service of the fleet (fleet.toml's and those that announce
themselves) with its instances, its routes and each route's calls over the last hour."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from butterfly_common.runtime import get_config

from .. import catalog
from ..config import CanghaiConfig
from .common import needs, page

bp = Blueprint("services", __name__, url_prefix="/console/services")


@bp.get("")
@needs("viewer")
def services_page() -> Any:
    services = catalog.services(get_config(CanghaiConfig))
    return page("services.html", active="services", services=services, minutes=catalog.WINDOW)
