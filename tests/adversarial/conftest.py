"""A loopback HTTP server that can misbehave the ways real mirrors do (127.0.0.1 only, no network)."""

from __future__ import annotations

import hashlib
import http.server
import threading

import pytest


def _etag(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:16] + '"'


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.files`` with HTTP Range support, or misbehaves as ``server.mode`` says:

    - "ok": honours ``Range: bytes=N-`` with 206 and ``Content-Range: bytes N-end/total``; 416 with
      ``Content-Range: bytes */total`` past the end;
    - "wrong_offset": answers a Range request with 206 but a range starting at 0;
    - "ignore_range": answers a Range request with 200 and the whole body;
    - "truncate": announces the full Content-Length but sends only the first half, then closes;
    - "close_delimited": no Content-Length, sends the first half, then closes (the end looks normal);
    - "ignore_if_range": honours Range but ignores If-Range (a changed file still answers 206).

    With ``server.etags`` true every answer carries a strong ETag of the body, and a Range request whose
    If-Range differs from it gets the whole body (200), as RFC 9110 says.
    """

    protocol_version = "HTTP/1.0"

    def do_GET(self):  # noqa: N802 (http.server's naming)
        srv = self.server
        body = srv.files.get(self.path)
        srv.requests.append(self.headers.get("Range"))
        srv.if_ranges.append(self.headers.get("If-Range"))
        if body is None:
            self.send_error(404)
            return
        header = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        if header and if_range and if_range != _etag(body) and srv.mode != "ignore_if_range":
            header = None  # the validator changed: the whole current body
        start = int(header[len("bytes=") :].rstrip("-")) if header else 0
        if srv.mode == "ok" and start >= len(body) and header:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(body)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if srv.mode == "wrong_offset" and header:
            self._send(206, body, 0, content_range=True)
        elif srv.mode == "ignore_range" or not header:
            self._send(200, body, 0, content_range=False)
        else:
            self._send(206, body, start, content_range=True)

    def _send(self, status: int, body: bytes, start: int, content_range: bool) -> None:
        srv = self.server
        payload = body[start:]
        self.send_response(status)
        if srv.etags:
            self.send_header("ETag", _etag(body))
        if content_range:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        if srv.mode != "close_delimited":
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if srv.mode in ("truncate", "close_delimited"):
            payload = payload[: len(payload) // 2]
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.files, httpd.requests, httpd.if_ranges, httpd.mode, httpd.etags = {}, [], [], "ok", False
    httpd.url = lambda path: f"http://127.0.0.1:{httpd.server_address[1]}{path}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
