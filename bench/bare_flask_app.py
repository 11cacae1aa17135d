"""The peer for bench/http_overhead.py: a bare Flask route answering what demo_api/ping does."""

import json
import secrets

from flask import Flask, Response

app = Flask(__name__)


@app.route("/demo_api/ping")
def ping() -> Response:
    body = json.dumps({"stat": "OK", "randstr": secrets.token_hex(8)})
    return Response(body, content_type="application/json")
