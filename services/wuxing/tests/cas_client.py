"""A CAS incrementer run as its own process by test_wx_processes.py (not a test module).

``python cas_client.py URL TOKEN THREADS INCREMENTS`` - each thread adds 1 to ``i|count`` of
``demo/counter`` INCREMENTS times with revision CAS, retrying on ERR_ITEM_UPDATE_FAILED
with the value and revision the refusal carries. Prints one JSON line of totals.
"""

from __future__ import annotations

import json
import random
import sys
import threading

import requests

TARGET = {"namespace": "demo", "instance_name": "counter", "item_name": "i|count"}


def worker(url: str, token: str, increments: int, totals: list[int], lock: threading.Lock):
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    detail = session.post(f"{url}/wuxing/instance_get", json={
        "namespace": "demo", "instance_name": "counter", "value_format": "detail",
        "items": "i|count"}, timeout=30).json()["data"]["i|count"]
    value, revision = detail["item_value"], detail["revision"]
    done = attempts = 0
    streak = 0
    while done < increments:
        attempts += 1
        body = session.post(f"{url}/wuxing/instance_update_item", json={
            **TARGET, "item_value": value + 1, "revision": revision}, timeout=30).json()
        if body["stat"] == "OK":
            done += 1
            value, revision = value + 1, body["data"]["revision"]
            streak = 0
            continue
        if body["stat"] != "ERR_ITEM_UPDATE_FAILED":
            raise RuntimeError(body)
        value, revision = body["data"]["item_value"], body["data"]["revision"]
        streak += 1
        threading.Event().wait(random.uniform(0, 0.002 * min(streak, 10)))  # jittered backoff
    with lock:
        totals[0] += done
        totals[1] += attempts


def main() -> None:
    url, token, threads, increments = sys.argv[1], sys.argv[2], int(sys.argv[3]), \
        int(sys.argv[4])
    totals, lock = [0, 0], threading.Lock()
    pool = [threading.Thread(target=worker, args=(url, token, increments, totals, lock))
            for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    print(json.dumps({"done": totals[0], "attempts": totals[1]}))


if __name__ == "__main__":
    main()
