"""demo_download: serve a file from the service's data dir (``BUTTERFLY_DATA_DIR``).

``..`` and absolute paths are refused by the framework before the disk is touched.
"""

from butterfly_common import Request, download, retstat


@download
def download_file(req: Request, filename: str):
    """Download ``filename`` from the data dir as an attachment."""
    return retstat.OK, {"filename": filename, "is_download": True}


@download
def show(req: Request, filename: str):
    """Show ``filename`` from the data dir inline."""
    return retstat.OK, {"filename": filename, "is_download": False}
