"""Issue 12, defect 11: every service's OpenAPI document is valid 3.0.3 and lists the
statuses its routes answer."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from openapi_spec_validator import validate

sys.path.insert(0, str(Path(__file__).parent))

from fuzzfleet import services

from butterfly_common.app import create_app
from butterfly_common.settings import load_settings

SERVICES = [inst.service for inst in services()]


def document(service: str, tmp_path: Path) -> dict:
    settings = load_settings({"BUTTERFLY_LOG_DIR": str(tmp_path / "log"),
                              "BUTTERFLY_DATA_DIR": str(tmp_path / "data")})
    return create_app(service, settings).test_client().get("/openapi.json").get_json()


@pytest.mark.parametrize("service", SERVICES)
def test_defect_11_openapi_document_validates_as_3_0_3(service, tmp_path):
    doc = document(service, tmp_path)
    assert doc["openapi"] == "3.0.3"
    validate(doc)  # raises on any violation of the 3.0.3 schema
    assert '"required": []' not in json.dumps(doc)
    for path, item in doc["paths"].items():
        for method, op in item.items():
            codes = set(op["responses"])
            assert codes & {"200", "default"}, (path, method)
            if path.startswith(("/healthz", "/readyz", "/metrics", "/openapi")):
                continue
            assert "400" in codes, (path, method)
            if method == "post":
                assert "413" in codes, (path, method)
            if op.get("security"):
                assert {"401", "403"} <= codes, (path, method)


def test_defect_11_route_statuses_come_from_the_statuses_map(tmp_path):
    paths = document("baichuan", tmp_path)["paths"]
    publish = paths["/baichuan/publish"]["post"]["responses"]
    assert {"200", "400", "409", "413", "503"} <= set(publish)
    assert "ERR_NO_CONSUMER" in publish["409"]["description"]
    assert {"401", "403", "404"} <= set(paths["/baichuan/purge"]["post"]["responses"])
    assert "503" in paths["/readyz"]["get"]["responses"]
    download = document("core", tmp_path)["paths"]
    dl = next(item["get"]["responses"] for p, item in download.items()
              if p.startswith("/demo_download/"))
    assert {"200", "403", "404"} <= set(dl)
