"""The `http` handler: one HTTP request, its response, and a first look at what came back.

It connects only to public addresses unless the worker's operator allows more
(`--allow-network`): conveyor.handlers.network checks every connection, redirects included.
"""

from __future__ import annotations

import codecs
import json as jsonlib
from collections.abc import Mapping
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import httpx

from conveyor.core.types import JSON
from conveyor.handlers.network import GuardedTransport, NetworkAccess

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
MAX_LINKS = 100
MAX_KEYS = 100
MAX_REDIRECTS = 10
_EXCERPT_CHARS = 200


class UnexpectedStatusError(RuntimeError):
    """The server answered with a status the task did not expect."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


def http(
    network: NetworkAccess,
    /,
    url: str,
    *,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    json: JSON = None,
    body: str | None = None,
    params: Mapping[str, JSON] | None = None,
    timeout_s: float = 30,
    expect_status: int | list[int] | None = None,
    max_body_bytes: int = 1_048_576,
    follow_redirects: bool = True,
) -> JSON:
    """Send one HTTP request and return the response, with a short analysis of its body.

    Arguments:
    - `url`: an `http://` or `https://` URL (nothing else is accepted).
    - `method`: GET (default), HEAD, POST, PUT, PATCH, DELETE or OPTIONS.
    - `headers`: request headers; `params`: query parameters added to the URL.
    - `json`: a JSON value sent as the body (with `Content-Type: application/json`), or `body`:
      text sent as is. Not both.
    - `timeout_s`: seconds allowed for connecting and for each read (default 30); the task's own
      `timeout_s` bounds the whole request.
    - `expect_status`: the status, or list of statuses, that count as success (default: any 2xx).
    - `max_body_bytes`: read at most this much of the body (default 1 MiB).
    - `follow_redirects`: follow 3xx redirects (default true; at most 10, each one checked as
      the first request is).

    Addresses: the handler connects only to public addresses. Loopback, private, link-local,
    multicast, reserved and unspecified addresses (and their IPv6 forms) are refused with
    BlockedAddressError, checked on the address it actually connects to, at every redirect,
    unless the worker was started with `--allow-network CIDR|HOST` for them. It ignores the
    HTTP(S)_PROXY variables: it connects directly. (`network` is what the worker allows, which
    the worker passes in: it is not a task argument.)

    Result: `{"status", "reason", "url" (after redirects), "headers" (lower-case names),
    "content_type", "body", "truncated", "analysis"}`. `body` is the parsed JSON when the
    response is JSON, else the text (null for binary content such as images); a body longer
    than max_body_bytes is cut there, with `truncated: true` (and left as text). `analysis` holds `length` (bytes read) and
    `content_type`, plus for HTML the page's `title` and its `links` (absolute http(s) URLs
    other than the page's own `#anchors`, first 100, with `link_count`), and for JSON the
    top-level `keys` (first 100, with `key_count`) of an object or the `items` count of an array.

    Errors: UnexpectedStatusError naming the status and quoting the start of the body;
    BlockedAddressError (a PermissionError) for an address the worker does not allow;
    ConnectionError or TimeoutError when the request fails (or redirects more than 10 times);
    ValueError for a URL (or a redirect) that is not http(s), or malformed arguments.
    """
    _check_url(url)
    verb = _method(method)
    if json is not None and body is not None:
        raise ValueError("give json or body, not both")
    if body is not None and not isinstance(body, str):
        raise TypeError(f"body must be a string, got {type(body).__name__}")
    expected = _expected(expect_status)
    limit = _limit(max_body_bytes)
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float) or timeout_s <= 0:
        raise ValueError(f"timeout_s must be a number > 0, got {timeout_s!r}")
    try:
        with httpx.Client(
            timeout=timeout_s, follow_redirects=False, trust_env=False,
            transport=GuardedTransport(network),
        ) as client:  # fmt: skip
            request = client.build_request(
                verb,
                url,
                headers=headers,
                params=params,  # type: ignore[arg-type]  # JSON scalars and lists, as httpx takes
                json=json,
                content=body,
            )
            response = _send(client, request, follow_redirects)
            try:
                data, truncated = _read(response, limit)
            finally:
                response.close()
    except httpx.TimeoutException as exc:
        raise TimeoutError(f"{verb} {url} timed out: {type(exc).__name__}") from exc
    except httpx.TransportError as exc:
        raise ConnectionError(f"{verb} {url} failed: {type(exc).__name__}: {exc}") from exc
    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    text = _decode(data, response.charset_encoding, final=not truncated)
    is_json, parsed = _json(text) if _is_json(content_type) and not truncated else (False, None)
    ok = response.status_code in expected if expected else response.is_success
    if not ok:
        shown = " ".join(text[:_EXCERPT_CHARS].split())
        wanted = ", ".join(map(str, sorted(expected))) if expected else "2xx"
        raise UnexpectedStatusError(
            f"{verb} {response.url} answered {response.status_code} {response.reason_phrase} "
            f"(expected {wanted}): {shown or '(empty body)'}",
            status=response.status_code,
        )
    analysis: dict[str, JSON] = {"length": len(data), "content_type": content_type}
    if is_json:
        analysis.update(_analyse_json(parsed))
    elif content_type in ("text/html", "application/xhtml+xml"):
        analysis.update(_analyse_html(text, str(response.url)))
    headers_out: dict[str, str] = {}
    for name, value in response.headers.multi_items():
        key = name.lower()
        headers_out[key] = f"{headers_out[key]}, {value}" if key in headers_out else value
    return {
        "status": response.status_code,
        "reason": response.reason_phrase,
        "url": str(response.url),
        "headers": dict(headers_out),
        "content_type": content_type,
        "body": parsed if is_json else text if _is_text(content_type) else None,
        "truncated": truncated,
        "analysis": analysis,
    }


def _send(client: httpx.Client, request: httpx.Request, follow: bool) -> httpx.Response:
    """Send `request`, following redirects one by one: each hop is a new request, whose
    connection the transport checks as it checked the first one's."""
    for _ in range(MAX_REDIRECTS):
        response = client.send(request, stream=True)
        if not follow or response.next_request is None:
            return response
        response.close()
        request = response.next_request
        _check_url(str(request.url))
    response = client.send(request, stream=True)
    if follow and response.next_request is not None:
        response.close()
        raise ConnectionError(
            f"{request.method} {request.url}: too many redirects (more than {MAX_REDIRECTS})"
        )
    return response


def _check_url(url: object) -> None:
    if not isinstance(url, str):
        raise TypeError(f"url must be a string, got {type(url).__name__}")
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise ValueError(f"url must be an http:// or https:// URL, got {url!r}")


def _method(method: object) -> str:
    verb = method.upper() if isinstance(method, str) else ""
    if verb not in METHODS:
        raise ValueError(f"method must be one of {', '.join(sorted(METHODS))}, got {method!r}")
    return verb


def _expected(expect_status: object) -> set[int]:
    """The accepted statuses; an empty set means any 2xx."""
    if expect_status is None:
        return set()
    values = expect_status if isinstance(expect_status, list) else [expect_status]
    if not values or not all(
        isinstance(v, int) and not isinstance(v, bool) and 100 <= v <= 599 for v in values
    ):
        raise ValueError(
            f"expect_status must be a status code or a list of them, got {expect_status!r}"
        )
    return {v for v in values if isinstance(v, int)}


def _limit(max_body_bytes: object) -> int:
    if (
        isinstance(max_body_bytes, bool)
        or not isinstance(max_body_bytes, int)
        or max_body_bytes < 0
    ):
        raise ValueError(f"max_body_bytes must be a whole number >= 0, got {max_body_bytes!r}")
    return max_body_bytes


def _read(response: httpx.Response, limit: int) -> tuple[bytes, bool]:
    """At most `limit` bytes of the (decompressed) body, and whether there was more."""
    data = bytearray()
    for chunk in response.iter_bytes():
        data += chunk
        if len(data) > limit:
            return bytes(data[:limit]), True  # stop reading: the rest is never downloaded
    return bytes(data), False


def _decode(data: bytes, charset: str | None, *, final: bool) -> str:
    try:
        info = codecs.lookup(charset or "utf-8")
    except LookupError:  # a charset Python does not know: read it as UTF-8
        info = codecs.lookup("utf-8")
    if not getattr(info, "_is_text_encoding", True):
        # "charset=bz2_codec" would have the server's few bytes decompressed into gigabytes.
        info = codecs.lookup("utf-8")
    decoder = info.incrementaldecoder(errors="replace")
    # Not final when cut: a character split by the cut is left out rather than mangled.
    return str(decoder.decode(data, final=final))


def _is_text(content_type: str) -> bool:
    kind, _, subtype = content_type.partition("/")
    return (
        not content_type  # unlabelled: most likely text
        or kind == "text"
        or subtype in ("xml", "javascript", "x-www-form-urlencoded", "x-ndjson")
        or subtype.endswith(("+xml", "+json"))
        or _is_json(content_type)
    )


def _is_json(content_type: str) -> bool:
    return content_type == "application/json" or content_type.endswith("+json")


def _json(text: str) -> tuple[bool, JSON]:
    """(True, the value) if `text` is JSON, else (False, None)."""
    try:
        return True, jsonlib.loads(text)
    except ValueError:
        return False, None


def _analyse_json(value: JSON) -> dict[str, JSON]:
    if isinstance(value, dict):
        keys: list[JSON] = [*list(value)[:MAX_KEYS]]
        return {"keys": keys, "key_count": len(value)}
    if isinstance(value, list):
        return {"items": len(value)}
    return {}


def _analyse_html(text: str, url: str) -> dict[str, JSON]:
    page = _Page()
    try:
        page.feed(text)
        page.close()
    except AssertionError:  # pragma: no cover - html.parser's way to give up on broken markup
        pass
    base = urljoin(url, page.base) if page.base else url
    links: dict[str, None] = {}  # in the page's order, each once
    for href in page.hrefs:
        if href.strip().startswith("#"):
            continue  # a place on this same page
        absolute = urljoin(base, href.strip()).split("#")[0]
        if urlsplit(absolute).scheme in ("http", "https"):
            links[absolute] = None
    title = " ".join("".join(page.title).split()) if page.title is not None else None
    shown: list[JSON] = [*list(links)[:MAX_LINKS]]
    return {"title": title, "links": shown, "link_count": len(links)}


class _Page(HTMLParser):
    """Collects the first <title>, every <a href> and a <base href>."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title: list[str] | None = None
        self.hrefs: list[str] = []
        self.base: str | None = None
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title" and self.title is None:
            self.title, self._in_title = [], True
        elif tag == "a":
            href = dict(attrs).get("href")
            if href:
                self.hrefs.append(href)
        elif tag == "base" and self.base is None:
            self.base = dict(attrs).get("href")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title and self.title is not None:
            self.title.append(data)
