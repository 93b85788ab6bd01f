"""A file server on 127.0.0.1 for download tests: generated files, Range requests, truncated transfers and 404s
on demand, and a record of the requests it saw."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Files(BaseHTTPRequestHandler):
    """Serves ``server.files`` (path -> bytes); ``server.truncate`` (path -> bytes sent before closing);
    records every request's Range header in ``server.ranges``."""

    def do_GET(self):  # noqa: N802 (the http.server name)
        server = self.server
        data = server.files.get(self.path)
        server.ranges.append((self.path, self.headers.get("Range")))
        if data is None:
            self.send_error(404, "Not Found")
            return
        start = 0
        if self.headers.get("Range", "").startswith("bytes="):
            start = int(self.headers["Range"][len("bytes="):].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        sent = data[start:server.truncate.get(self.path, len(data))]
        self.wfile.write(sent)

    def log_message(self, *args):  # the test's output stays the test's
        pass


@contextlib.contextmanager
def file_server() -> Iterator[ThreadingHTTPServer]:
    """A running server (``.url``, ``.files``, ``.truncate``, ``.ranges``), stopped when the block ends."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Files)
    httpd.files, httpd.truncate, httpd.ranges = {}, {}, []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
