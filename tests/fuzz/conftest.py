"""Fixtures of the fuzz tests: the whole fleet, started once per session."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).parent))

from fuzzfleet import FUZZ_ENV, TOKEN, services

from butterfly_common.testing import ButterflyService, RedisServer, free_port, wait_until


@pytest.fixture(scope="session")
def fuzz_fleet() -> Iterator[dict[str, ButterflyService]]:
    """``{service: running ButterflyService}`` for every service of the fleet."""
    with contextlib.ExitStack() as stack:
        redis_server = stack.enter_context(RedisServer())
        running = {}
        fleet = services()
        # ports chosen first, so every service finds the others (canghai's pages call them)
        ports = {inst.service: free_port() for inst in fleet}
        urls = {f"BUTTERFLY_{name.upper()}_URL": f"http://127.0.0.1:{port}"
                for name, port in ports.items()}
        for inst in fleet:
            env = {**inst.env, **FUZZ_ENV.get(inst.service, {}), **urls,
                   "BUTTERFLY_REDIS_URL": redis_server.url, "BUTTERFLY_ADMIN_TOKEN": TOKEN,
                   "BUTTERFLY_WORKERS": "1", "BUTTERFLY_THREADS": "8"}
            running[inst.service] = stack.enter_context(
                ButterflyService(inst.service, env, port=ports[inst.service]))
        for service in running.values():
            wait_until(lambda s=service: requests.get(f"{s.url}/healthz", timeout=2).ok, 30,
                       what=f"{service.service} up")
        yield running
