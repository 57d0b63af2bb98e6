"""A local HTTP server in a thread, for tests that fetch URLs (the suite may reach 127.0.0.1 only)."""

import contextlib
import io
import itertools
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from PIL import Image

SLOW_S = 1.0  # what the slow handler waits before it answers; the tests' timeouts are far below


def _encoded(fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 30, 3), dtype=np.uint8)).save(buffer, fmt)
    return buffer.getvalue()


JPEG, PNG = _encoded("JPEG"), _encoded("PNG")


class Handler(BaseHTTPRequestHandler):
    """The test server's pages, named by what they do; ``server.hits`` counts the requests per path."""

    def do_GET(self):
        self.server.hits[self.path] += 1
        name = self.path.split("?")[0]
        if name == "/good.jpg":
            self._send(200, JPEG, "image/jpeg")
        elif name == "/good.png":
            self._send(200, PNG, "image/png")
        elif name == "/page":
            self._send(200, b"<html><body>Sign in to see this photo</body></html>", "text/html; charset=utf-8")
        elif name == "/slow":
            time.sleep(SLOW_S)
            self._send(200, JPEG, "image/jpeg")
        elif name == "/big":
            self._send(200, b"\xff" * 5000, "image/jpeg")
        elif name == "/big-unsized":  # no Content-Length: the limit must hold while reading
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.end_headers()
            self.wfile.write(b"\xff" * 5000)
            self.close_connection = True
        elif name == "/trickle":  # each piece well within the timeout, the whole far beyond it
            self.send_response(200)
            self.send_header("Content-Length", str(100 * 40))
            self.end_headers()
            for _ in range(40):
                self.wfile.write(b"\xff" * 100)
                self.wfile.flush()
                time.sleep(0.05)
        elif name == "/busy":  # 503 twice, then the photo
            busy = self.server.hits[self.path] <= 2
            self._send(503, b"busy", "text/plain") if busy else self._send(200, JPEG, "image/jpeg")
        elif name == "/down":
            self._send(503, b"down", "text/plain")
        else:
            self._send(404, b"no such page", "text/plain")

    def _send(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):  # quiet
        pass



class Server:
    """The running server: ``url(page)`` gives a fresh address of a page, ``hits(url)`` the requests it got."""

    def __init__(self, httpd: ThreadingHTTPServer) -> None:
        self._httpd, self._unique = httpd, itertools.count()

    def url(self, page: str) -> str:
        # A query of its own, so that each address's requests count alone.
        return f"http://127.0.0.1:{self._httpd.server_port}/{page}?n={next(self._unique)}"

    def hits(self, url: str) -> int:
        return self._httpd.hits[url.split(str(self._httpd.server_port), 1)[1]]


@contextlib.contextmanager
def serving():
    """A Server on a free port of 127.0.0.1 for the duration of the block."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.handle_error = lambda request, address: None  # a client that gave up mid-body (the point of some tests)
    httpd.hits = Counter()
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield Server(httpd)
    finally:
        httpd.shutdown()
        httpd.server_close()
