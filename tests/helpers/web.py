"""A small web site on 127.0.0.1, served from a thread, for tests of the `http` handler and of the
network example. No network beyond loopback is used.

```python
with serve_site({"/": Page(PAGE_HTML)}) as site:
    http(site.url + "/")
```

`/echo` (always there) answers with the request it got, as JSON; `/hold` waits until the site is
closed (or 10 s), to test client timeouts without sleeping in the test.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

PAGE_TITLE = "Conveyor example page"
PAGE_HTML = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>
  {PAGE_TITLE}
</title></head>
<body>
  <h1>Links</h1>
  <a href="/docs">docs</a>
  <a href="about.html#team">about</a>
  <a href="https://example.org/x">elsewhere</a>
  <a href="/docs">docs again</a>
  <a href="mailto:someone@example.org">mail</a>
  <a href="#top">top</a>
</body></html>
"""
PAGE_LINKS = ["/docs", "/about.html", "https://example.org/x"]
"""The page's links as the handler reports them (site-relative ones still need the site's URL)."""


@dataclass(frozen=True)
class Page:
    body: str | bytes
    status: int = 200
    content_type: str = "text/html; charset=utf-8"
    headers: Mapping[str, str] = field(default_factory=dict)


class LocalSite:
    def __init__(self, pages: Mapping[str, Page]) -> None:
        self.pages = dict(pages)
        self.requests: list[dict[str, object]] = []
        self.closing = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self.closing.set()  # releases /hold
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


@contextmanager
def serve_site(pages: Mapping[str, Page] | None = None) -> Iterator[LocalSite]:
    site = LocalSite(pages or {"/": Page(PAGE_HTML)})
    site.start()
    try:
        yield site
    finally:
        site.close()


def _handler_for(site: LocalSite) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            parts = urlsplit(self.path)
            seen = {
                "method": self.command,
                "path": parts.path,
                "query": parts.query,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body.decode("utf-8", errors="replace"),
            }
            site.requests.append(seen)
            if parts.path == "/echo":
                page = Page(json.dumps(seen), content_type="application/json")
            elif parts.path == "/hold":
                site.closing.wait(10)
                page = Page("released", content_type="text/plain")
            else:
                page = site.pages.get(parts.path, Page("no such page", 404, "text/plain"))
            data = page.body.encode() if isinstance(page.body, str) else page.body
            self.send_response(page.status)
            self.send_header("Content-Type", page.content_type)
            self.send_header("Content-Length", str(len(data)))
            for name, value in page.headers.items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve

        def log_message(self, format: str, *args: object) -> None:
            pass  # keep test output clean

    return Handler
