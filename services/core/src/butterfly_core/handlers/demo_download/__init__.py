"""demo_download: serve a file from the download folder (``<data dir>/download`` or
``BUTTERFLY_DOWNLOAD_DIR``), never from the data dir itself, which holds the database.

``..``, absolute paths and control characters are refused by the framework before the
disk is touched.
"""

from butterfly_common import Request, download, retstat


@download
def download_file(req: Request, filename: str):
    """Download ``filename`` from the download folder as an attachment."""
    return retstat.OK, {"filename": filename, "is_download": True}


@download
def show(req: Request, filename: str):
    """Show ``filename`` from the download folder inline."""
    return retstat.OK, {"filename": filename, "is_download": False}
