"""The batches pages: the list with progress, one batch with its callbacks, the operator's
cancel (CSRF-checked), 4xx for bad ids."""

from __future__ import annotations

from canghai_helpers import page_csrf, sign_in


def test_batches_list_one_batch_and_cancel(client, broker) -> None:
    broker.heartbeat("w1", ["/b/work"])
    bid, _ = broker.publish_batch([{"topic": "/b/work", "data": {}}] * 4,
                                  on_complete="/b/done", batch_id="order-7",
                                  data={"order": 7})
    [m] = broker.claim("/b/work", "w1", 1)
    assert broker.complete(m, {"stat": "OK"})
    broker.batch_ended(m, "ok")
    sign_in(client, "vera")  # a viewer: sees, cannot cancel
    listing = client.get("/console/batches").text
    assert 'data-batch="order-7"' in listing and "25%" in listing
    one = client.get("/console/batch?id=order-7").text
    assert 'data-field="pending">3<' in one and "/b/done" in one
    assert "/console/batch/cancel" not in one
    assert client.get("/console/batch?id=nope").status_code == 404
    assert client.get("/console/batch?id=%7Bbad%7D").status_code == 400
    client.post("/console/logout", data={"csrf_token": page_csrf(client)})
    sign_in(client, "ada")
    one = client.get("/console/batch?id=order-7").text
    assert "/console/batch/cancel" in one
    assert client.post("/console/batch/cancel", data={"id": bid}).status_code == 403
    csrf = page_csrf(client, "/console/batch?id=order-7")
    done = client.post("/console/batch/cancel", data={"id": bid, "csrf_token": csrf})
    assert done.status_code == 302
    b = broker.get_batch(bid, repair=False)
    assert (b.state, b.failed, b.ok) == ("canceled", 3, 1)
    assert 'data-state="canceled"' in client.get("/console/batch?id=order-7").text
