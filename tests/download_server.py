"""The local HTTP server that the download tests run against, standing in for UCSC, the Basenji bucket and the
Hub: a 1 MiB ``PAYLOAD`` at ``/file`` with Range and If-Range support, and switches in a shared ``state`` for the
failures a real transfer meets (``pytest``'s ``server`` fixture in ``conftest.py`` starts one per test); ``length``
False sends no Content-Length, so that a cut transfer looks complete."""
from __future__ import annotations

import hashlib
import http.server
import re
import threading
import time
from contextlib import contextmanager
from typing import Iterator

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB
SHA = hashlib.sha256(PAYLOAD).hexdigest()
MD5 = hashlib.md5(PAYLOAD).hexdigest()


class DownloadHandler(http.server.BaseHTTPRequestHandler):
    """Serves PAYLOAD at /file, after ``delay`` seconds, with Range support (416 past its end); the first ``cut``
    requests die half way, the first ``fail`` requests answer HTTP 500, and /moved redirects to /file."""

    server_state: dict = {}

    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):
        state = self.server_state
        state["requests"].append(self.headers.get("Range"))
        state["if_range"].append(self.headers.get("If-Range"))
        payload = state["payload"]
        if self.path in state.get("extra", {}):
            body = state["extra"][self.path]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if self.path == "/moved":
            self.send_response(302)
            self.send_header("Location", "/file")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path != "/file":
            self.send_error(404)
            return
        time.sleep(state["delay"])
        if state["fail"] > 0:
            state["fail"] -= 1
            self.send_error(500)
            return
        start = 0
        match = re.match(r"bytes=(\d+)-", self.headers.get("Range") or "")
        # If-Range: the rest only of that version (a server with "if_range" off ignores it and sends the rest anyway)
        same = self.headers.get("If-Range") in (None, state["etag"]) or not state["if_range_honoured"]
        if match and state["ranges"] and same:
            start = int(match.group(1))
            if start >= len(payload):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(payload)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(payload) - 1}/{len(payload)}")
        else:
            self.send_response(200)
        if state["etag"]:
            self.send_header("ETag", state["etag"])
        body = payload[start:]
        if state["length"]:  # else the body ends where the connection closes (HTTP/1.0 style)
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if state["cut"] > 0:
            state["cut"] -= 1
            self.wfile.write(body[: len(body) // 3])
            self.wfile.flush()
            self.connection.shutdown(2)  # drop the connection mid-transfer
            return
        self.wfile.write(body)


@contextmanager
def serving() -> Iterator[tuple[str, dict]]:
    """A server on a free local port for the block: its base URL and its ``state``. ``etag`` None is a server
    that sends neither ETag nor Last-Modified; the tests set the other switches."""
    state = {"requests": [], "if_range": [], "cut": 0, "fail": 0, "delay": 0.0, "ranges": True, "payload": PAYLOAD,
             "etag": None, "length": True, "if_range_honoured": True}
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), type("H", (DownloadHandler,), {"server_state": state}))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", state
    finally:
        httpd.shutdown()
        httpd.server_close()
