"""A CAS incrementer run as its own process by test_wuxing_processes.py (not a test module).

``python cas_client.py URL TOKEN THREADS INCREMENTS`` - each thread adds 1 to ``i|count`` of
``demo/counter`` INCREMENTS times with revision CAS, retrying on ERR_ITEM_UPDATE_FAILED
with the value and revision the refusal carries. Each thread names itself in X-Username
(the service trusts 127.0.0.1 as a proxy), so a write whose answer a connection reset lost
is recognised in the history instead of being counted twice or not at all. Prints one
JSON line of totals.
"""

from __future__ import annotations

import json
import os
import random
import sys
import threading

import requests

TARGET = {"namespace": "demo", "instance_name": "counter", "item_name": "i|count"}


def _post(session: requests.Session, url: str, handler: str, **params) -> dict:
    return session.post(f"{url}/wuxing/{handler}", json=params, timeout=60).json()


def _read(session: requests.Session, url: str) -> tuple[int, int]:
    detail = _post(session, url, "instance_get", namespace="demo", instance_name="counter",
                   value_format="detail", items="i|count")["data"]["i|count"]
    return detail["item_value"], detail["revision"]


def _was_mine(session: requests.Session, url: str, me: str, value: int) -> bool | None:
    """After a lost answer: did *our* write take the counter from ``value`` to ``value+1``?

    Each update adds one, so the history row of that step is the (current - value)-th
    newest; its user (X-Username through a trusted proxy) tells whose write it was.
    None: the step did not happen yet.
    """
    current, _ = _read(session, url)
    if current <= value:
        return None
    rows = _post(session, url, "item_history_list", item_id=ITEM_ID[0],
                 page_index=current - value, page_size=1)["data"]["list"]
    row = rows[0]
    assert row["item_value_old"] == value and row["item_value"] == value + 1, row
    return row["user"] == me


ITEM_ID = [0]


def worker(url: str, token: str, increments: int, totals: list[int], lock: threading.Lock,
           me: str) -> None:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    session.headers["X-Username"] = me
    value, revision = _read(session, url)
    done = attempts = 0
    streak = 0
    while done < increments:
        attempts += 1
        try:
            body = _post(session, url, "instance_update_item", **TARGET,
                         item_value=value + 1, revision=revision)
        except requests.RequestException:
            # The answer is lost (a connection reset on a loaded machine): find out
            # whether the write happened before trying again, so nothing counts twice.
            while True:
                try:
                    mine = _was_mine(session, url, me, value)
                    value, revision = _read(session, url)
                    break
                except requests.RequestException:
                    threading.Event().wait(0.2)
            if mine:
                done += 1
            continue
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
    ITEM_ID[0] = _post(requests.Session(), url, "instance_get", namespace="demo",
                       instance_name="counter", value_format="detail")["data"]["i|count"][
                           "item_id"]
    tag = f"p{os.getpid()}"
    pool = [threading.Thread(target=worker, args=(url, token, increments, totals, lock,
                                                  f"{tag}-t{n}"))
            for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    print(json.dumps({"done": totals[0], "attempts": totals[1]}))


if __name__ == "__main__":
    main()
