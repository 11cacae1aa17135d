"""A wuxing client process for test_wuxing_gray_processes.py (not a test module).

``python gray_client.py URL NAMESPACE NAME LABELS IP STATE_FILE`` - runs what the server
says this client should run (``WuxingClient.config`` with its name and comma-separated
labels; IP ``-``: the peer's, else sent as X-Real-IP since the service trusts 127.0.0.1
as a proxy), refuses a release with ``web1``'s ``i|port`` 666 (reported as rejected with
the validation error), writes what it runs to STATE_FILE (JSON, atomically) and reports it
applied; then watches the namespace and starts over on the next change (or after 10 s).
"""

from __future__ import annotations

import json
import os
import sys
import time

from butterfly_common.httpclient import TransportError
from butterfly_wuxing.client import WuxingClient


class Client(WuxingClient):
    def __init__(self, url: str, name: str, labels: list[str], ip: str | None) -> None:
        super().__init__(url, client=name, labels=labels)
        self.ip = ip

    def headers(self) -> dict[str, str]:
        return {**super().headers(), **({"X-Real-IP": self.ip} if self.ip else {})}


def main() -> None:
    url, namespace, name, labels, ip, state_file = sys.argv[1:7]
    wx = Client(url, name, [x for x in labels.split(",") if x], None if ip == "-" else ip)
    while True:
        try:
            release = wx.config(namespace)
            port = release["values"]["web1"]["i|port"]
            if port == 666:
                wx.report(namespace, release, error=f"{name}: i|port 666 is not allowed here")
            else:
                tmp = f"{state_file}.tmp"
                with open(tmp, "w") as out:
                    json.dump({"revision": release["revision"], "gray_id": release["gray_id"],
                               "port": port}, out)
                os.replace(tmp, state_file)
                wx.report(namespace, release)
            wx.data("watch", {"namespace": namespace, "since": release["namespace_revision"],
                              "timeout": 10}, timeout=30)
        except TransportError:
            time.sleep(0.2)


if __name__ == "__main__":
    main()
