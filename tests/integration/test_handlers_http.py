"""The `http` handler against a real local HTTP server: requests, responses, analysis, limits, and
the addresses it refuses.

The site listens on 127.0.0.1, which the handler refuses unless allowed: `fetch` is the handler as
a worker started with `--allow-network 127.0.0.1` runs it; `locked` as a worker without it.
"""

from __future__ import annotations

import bz2
import json
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from conveyor.handlers import HandlerPolicy, resolve_handler
from conveyor.handlers.http import MAX_LINKS, MAX_REDIRECTS, UnexpectedStatusError
from conveyor.testing import free_port
from tests.helpers.web import PAGE_HTML, PAGE_LINKS, PAGE_TITLE, LocalSite, Page, serve_site

MANY_LINKS = "<title>many</title>" + "".join(f'<a href="/p{i}">{i}</a>' for i in range(150))

PAGES = {
    "/": Page(PAGE_HTML),
    "/object.json": Page(json.dumps({"name": "conveyor", "tags": ["a"], "n": 3}), content_type="application/json"),
    "/array.json": Page(json.dumps([1, 2, 3, 4]), content_type="application/problem+json"),
    "/broken.json": Page("{not json", content_type="application/json"),
    "/big.json": Page(json.dumps({"data": "x" * 10_000}), content_type="application/json"),
    "/latin1": Page("caf\xe9".encode("latin-1"), content_type="text/plain; charset=iso-8859-1"),
    "/headers": Page("ok", content_type="text/plain", headers={"X-Conveyor": "yes", "Set-Cookie": "a=1"}),
    "/missing": Page("the page is gone\nreally", 404, "text/plain"),
    "/created": Page("made", 201, "text/plain"),
    "/old": Page("", 302, "text/plain", headers={"Location": "/"}),
    "/many": Page(MANY_LINKS),
    "/image.png": Page(b"\x89PNG\r\n\x1a\n", content_type="image/png"),
    "/bomb": Page(bz2.compress(b"x" * 1_000_000), content_type="text/plain; charset=bz2_codec"),
}  # fmt: skip


http = resolve_handler("http", HandlerPolicy(allow_networks=("127.0.0.1",)))
locked = resolve_handler("http", HandlerPolicy())


@pytest.fixture(scope="module")
def site() -> Iterator[LocalSite]:
    with serve_site(PAGES) as s:
        yield s


def test_html_page_is_analysed(site: LocalSite) -> None:
    result = http(site.url + "/")
    assert (result["status"], result["reason"], result["url"]) == (200, "OK", site.url + "/")
    assert result["content_type"] == "text/html"
    assert result["body"] == PAGE_HTML and result["truncated"] is False
    expected_links = [link if "://" in link else site.url + link for link in PAGE_LINKS]
    assert result["analysis"] == {
        "length": len(PAGE_HTML.encode()),
        "content_type": "text/html",
        "title": PAGE_TITLE,
        "links": expected_links,
        "link_count": 3,
    }


def test_links_are_capped(site: LocalSite) -> None:
    analysis = http(site.url + "/many")["analysis"]
    assert len(analysis["links"]) == MAX_LINKS and analysis["link_count"] == 150
    assert analysis["links"][0] == site.url + "/p0"


@pytest.mark.parametrize(
    ("path", "body", "analysis"),
    [
        (
            "/object.json",
            {"name": "conveyor", "tags": ["a"], "n": 3},
            {"keys": ["name", "tags", "n"], "key_count": 3},
        ),
        ("/array.json", [1, 2, 3, 4], {"items": 4}),
        ("/broken.json", "{not json", {}),
    ],
)
def test_json_is_parsed_and_analysed(
    site: LocalSite, path: str, body: Any, analysis: dict[str, Any]
) -> None:
    result = http(site.url + path)
    assert result["body"] == body
    assert {k: v for k, v in result["analysis"].items() if k not in ("length", "content_type")} == (
        analysis
    )


def test_response_headers_are_lower_case(site: LocalSite) -> None:
    headers = http(site.url + "/headers")["headers"]
    assert headers["x-conveyor"] == "yes" and headers["set-cookie"] == "a=1"
    assert headers["content-type"] == "text/plain"


def test_the_charset_is_honoured(site: LocalSite) -> None:
    assert http(site.url + "/latin1")["body"] == "café"


def test_body_is_truncated_and_then_left_as_text(site: LocalSite) -> None:
    result = http(site.url + "/big.json", max_body_bytes=100)
    assert result["truncated"] is True
    assert isinstance(result["body"], str) and len(result["body"]) == 100
    assert result["analysis"]["length"] == 100


def test_request_method_headers_json_and_params_are_sent(site: LocalSite) -> None:
    result = http(
        site.url + "/echo",
        method="post",
        headers={"X-Trace": "t1"},
        json={"a": [1, 2]},
        params={"q": "x y", "n": 2},
    )
    seen = result["body"]
    assert (seen["method"], seen["query"]) == ("POST", "q=x+y&n=2")
    assert seen["headers"]["x-trace"] == "t1"
    assert seen["headers"]["content-type"] == "application/json"
    assert json.loads(seen["body"]) == {"a": [1, 2]}


def test_a_text_body(site: LocalSite) -> None:
    seen = http(site.url + "/echo", method="PUT", body="plain text")["body"]
    assert (seen["method"], seen["body"]) == ("PUT", "plain text")


def test_unexpected_status_fails_with_status_and_excerpt(site: LocalSite) -> None:
    with pytest.raises(UnexpectedStatusError) as caught:
        http(site.url + "/missing")
    assert caught.value.status == 404
    assert str(caught.value) == (
        f"GET {site.url}/missing answered 404 Not Found (expected 2xx): the page is gone really"
    )


@pytest.mark.parametrize(
    ("path", "expect_status", "ok"),
    [
        ("/missing", 404, True),
        ("/missing", [200, 404], True),
        ("/created", None, True),
        ("/created", 200, False),
        ("/", [201, 204], False),
    ],
)
def test_expect_status(site: LocalSite, path: str, expect_status: Any, ok: bool) -> None:
    if ok:
        assert http(site.url + path, expect_status=expect_status)["status"] in (201, 404)
    else:
        with pytest.raises(UnexpectedStatusError, match="expected"):
            http(site.url + path, expect_status=expect_status)


def test_redirects_are_followed_unless_asked_not_to(site: LocalSite) -> None:
    assert http(site.url + "/old")["url"] == site.url + "/"
    with pytest.raises(UnexpectedStatusError, match="302"):
        http(site.url + "/old", follow_redirects=False)
    kept = http(site.url + "/old", follow_redirects=False, expect_status=302)
    assert kept["headers"]["location"] == "/"


def test_a_charset_that_is_not_a_text_encoding_is_read_as_utf8(site: LocalSite) -> None:
    result = http(site.url + "/bomb")
    size = len(bz2.compress(b"x" * 1_000_000))
    assert result["analysis"]["length"] == size
    assert isinstance(result["body"], str) and len(result["body"]) <= size, "not decompressed"


def test_binary_content_gets_length_and_type_but_no_body(site: LocalSite) -> None:
    result = http(site.url + "/image.png")
    assert result["body"] is None
    assert result["analysis"] == {"length": 8, "content_type": "image/png"}


@pytest.mark.parametrize(
    ("url", "kwargs", "message"),
    [
        ("ftp://127.0.0.1/x", {}, "http:// or https://"),
        ("file:///etc/passwd", {}, "http:// or https://"),
        ("127.0.0.1:80/x", {}, "http:// or https://"),
        ("http://", {}, "http:// or https://"),
        ("{site}/echo", {"method": "TRACE"}, "method must be one of"),
        ("{site}/echo", {"json": {}, "body": "x"}, "not both"),
        ("{site}/echo", {"expect_status": "200"}, "expect_status"),
        ("{site}/echo", {"expect_status": [True]}, "expect_status"),
        ("{site}/echo", {"max_body_bytes": -1}, "max_body_bytes"),
        ("{site}/echo", {"timeout_s": 0}, "timeout_s"),
    ],
)
def test_bad_arguments_are_refused_before_any_request(
    site: LocalSite, url: str, kwargs: dict[str, Any], message: str
) -> None:
    before = len(site.requests)
    with pytest.raises(ValueError, match=message):
        http(url.replace("{site}", site.url), **kwargs)
    assert len(site.requests) == before


def test_connection_refused_is_a_connection_error() -> None:
    url = f"http://127.0.0.1:{free_port()}/"
    with pytest.raises(ConnectionError, match=f"GET {url} failed: ConnectError"):
        http(url)


def test_a_slow_server_is_a_timeout(site: LocalSite) -> None:
    with pytest.raises(TimeoutError, match="/hold timed out"):
        http(site.url + "/hold", timeout_s=0.2)


def test_registered_under_http_and_allowed_everywhere(site: LocalSite) -> None:
    handler = resolve_handler("http", HandlerPolicy(allow_networks=("127.0.0.0/8",)))
    assert handler(site.url + "/created")["status"] == 201


# ---- what it refuses to reach ------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/echo",
        "http://localhost:{port}/echo",
        "http://2130706433:{port}/echo",
        "http://0x7f000001:{port}/echo",
        "http://127.1:{port}/echo",
        "http://[::ffff:127.0.0.1]:{port}/echo",
        "http://0.0.0.0:{port}/echo",
    ],
)
def test_loopback_is_refused_by_default(site: LocalSite, url: str) -> None:
    before = len(site.requests)
    with pytest.raises(PermissionError, match=r"loopback.*--allow-network"):
        locked(url.format(port=site.port))
    assert len(site.requests) == before, "the site was reached"


@pytest.mark.parametrize(
    "url", ["http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/", "http://[fd00::1]/"]
)
def test_private_and_link_local_addresses_are_refused_without_connecting(url: str) -> None:
    with pytest.raises(PermissionError, match=r"(private|link-local) address"):
        locked(url, timeout_s=0.5)


def test_a_redirect_to_a_refused_address_is_not_followed(site: LocalSite) -> None:
    # The first hop is allowed by host name; its redirect leads to 127.0.0.1, which is not.
    site.pages["/away"] = Page("", 302, "text/plain", headers={"Location": f"{site.url}/echo"})
    by_name = resolve_handler("http", HandlerPolicy(allow_networks=("localhost",)))
    before = len(site.requests)
    with pytest.raises(PermissionError, match=r"127\.0\.0\.1.*loopback"):
        by_name(f"http://localhost:{site.port}/away")
    assert [r["path"] for r in site.requests[before:]] == ["/away"], "the redirect was followed"


def test_an_allowed_host_name_keeps_its_host_header(site: LocalSite) -> None:
    by_name = resolve_handler("http", HandlerPolicy(allow_networks=("localhost",)))
    seen = by_name(f"http://localhost:{site.port}/echo")["body"]
    assert seen["headers"]["host"] == f"localhost:{site.port}"
    with pytest.raises(PermissionError):
        by_name(f"{site.url}/echo")  # the same server by its address: not allowed


def test_redirects_are_followed_a_bounded_number_of_times(site: LocalSite) -> None:
    site.pages["/loop"] = Page("", 302, "text/plain", headers={"Location": "/loop"})
    before = len(site.requests)
    with pytest.raises(ConnectionError, match="too many redirects"):
        http(site.url + "/loop")
    assert len(site.requests) - before == MAX_REDIRECTS + 1


def test_a_redirect_to_another_scheme_is_refused(site: LocalSite) -> None:
    site.pages["/file"] = Page("", 302, "text/plain", headers={"Location": "file:///etc/passwd"})
    with pytest.raises(ValueError, match="http:// or https://"):
        http(site.url + "/file")


class Rebinding:
    """socket.getaddrinfo answering `name` with one address the first time, another after."""

    def __init__(self, name: str, first: str, then: str) -> None:
        self.name, self.first, self.then = name, first, then
        self.calls = 0
        self.real = socket.getaddrinfo

    def __call__(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != self.name:
            return self.real(host, port, *args, **kwargs)
        self.calls += 1
        address = self.first if self.calls == 1 else self.then
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]


def test_the_connection_goes_to_the_address_that_was_checked(
    site: LocalSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Resolving again would give 127.0.0.2, where nothing listens: the request would fail.
    rebinding = Rebinding("site.test", "127.0.0.1", "127.0.0.2")
    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    allowed = resolve_handler("http", HandlerPolicy(allow_networks=("127.0.0.1",)))
    seen = allowed(f"http://site.test:{site.port}/echo")["body"]
    assert seen["headers"]["host"] == f"site.test:{site.port}", "the Host header names the site"
    assert rebinding.calls == 1


def test_a_name_resolving_to_a_refused_address_is_refused(
    site: LocalSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(socket, "getaddrinfo", Rebinding("site.test", "127.0.0.1", "8.8.8.8"))
    before = len(site.requests)
    with pytest.raises(PermissionError, match=r"127\.0\.0\.1 \('site\.test'\): a loopback"):
        locked(f"http://site.test:{site.port}/echo")
    assert len(site.requests) == before


@pytest.fixture
def tls_site(tmp_path: Path) -> Iterator[tuple[int, list[str | None], Path]]:
    """An HTTPS server on 127.0.0.1 with a certificate for site.test only; it records the TLS
    server names clients ask for."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=site.test",
         "-addext", "subjectAltName=DNS:site.test"],
        check=True, capture_output=True,
    )  # fmt: skip
    names: list[str | None] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda _socket, name, _context: names.append(name)

    class Hello(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = self.headers.get("Host", "").encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1]), names, cert
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_tls_names_the_original_host_while_connecting_to_the_checked_address(
    tls_site: tuple[int, list[str | None], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    port, names, cert = tls_site
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    monkeypatch.setattr(socket, "getaddrinfo", Rebinding("site.test", "127.0.0.1", "127.0.0.2"))
    allowed = resolve_handler("http", HandlerPolicy(allow_networks=("127.0.0.1",)))
    result = allowed(f"https://site.test:{port}/")
    assert result["body"] == f"site.test:{port}"
    assert names == ["site.test"], "the TLS server name is the URL's host, and it was verified"
