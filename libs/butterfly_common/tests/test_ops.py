"""Built-in endpoints: /healthz, /readyz, /metrics, /openapi.json."""

from __future__ import annotations

import json

from butterfly_common.testing import free_port


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert json.loads(response.data)["stat"] == "OK"


def test_readyz_checks_redis_and_db(make_app):
    ready = make_app().test_client().get("/readyz")
    assert ready.status_code == 200
    assert json.loads(ready.data) == {"stat": "OK", "redis": "ok", "db": "ok", "queue": "ok"}
    down = make_app(BUTTERFLY_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0").test_client()
    response = down.get("/readyz")
    assert response.status_code == 503
    body = json.loads(response.data)
    assert body["stat"] == "ERR_UNAVAILABLE" and body["db"] == "ok"
    assert body["redis"].startswith("error: ConnectionError")
    assert response.headers["x-reason"] == "dependency down: redis"


def _sample(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_per_route_and_stat(client):
    before = _sample(client.get("/metrics").data.decode(), "butterfly_requests_total",
                     route="/kinds/echo", method="GET", stat="ERR_BAD_PARAMS")
    for _ in range(3):
        client.get("/kinds/echo")
    client.get("/kinds/echo?a=1")
    client.get("/random/scanner/path")
    text = client.get("/metrics").data.decode()
    assert _sample(text, "butterfly_requests_total", route="/kinds/echo", method="GET",
                   stat="ERR_BAD_PARAMS") == before + 3
    assert _sample(text, "butterfly_requests_total", route="/kinds/echo", stat="OK") >= 1
    assert _sample(text, "butterfly_requests_total", route="<unknown>", stat="ERR_NOT_FOUND") >= 1
    assert "/random/scanner/path" not in text
    assert _sample(text, "butterfly_request_seconds_count", route="/kinds/echo",
                   method="GET") >= 4


def test_openapi_from_signatures_and_docstrings(client):
    spec = json.loads(client.get("/openapi.json").data)
    assert spec["openapi"].startswith("3.")
    echo = spec["paths"]["/kinds/echo"]["get"]
    assert echo["summary"] == "Echo back the coerced parameters."
    params = {p["name"]: p for p in echo["parameters"]}
    assert params["a"] == {"name": "a", "in": "query", "required": True,
                           "schema": {"type": "string"}}
    assert params["b"]["schema"] == {"type": "integer"} and not params["b"]["required"]
    assert params["tags"]["schema"] == {"type": "array", "items": {"type": "string"},
                                        "nullable": True}
    body = spec["paths"]["/kinds/echo"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["required"] == ["a"]
    assert spec["paths"]["/secure/wipe"]["post"]["security"] == [{"adminToken": []}]
    assert "/kinds/plain" not in spec["paths"]
