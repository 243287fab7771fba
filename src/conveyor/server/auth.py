"""Bearer tokens with roles, and who may call what.

| role   | may call                                                                          |
| ------ | --------------------------------------------------------------------------------- |
| client | tasks (submit, read, wait, cancel, retry, delete), schedules, reading workers,   |
|        | status, monitor, the dashboard's views, /metrics                                  |
| worker | the worker side: register, heartbeat, lease, report, deregister itself            |
| admin  | everything, and it alone deregisters other workers (`DELETE /workers/{id}`)       |

A worker token says that a caller is a worker, not which one: a call acting for worker W must
also carry W's own secret, handed out when it registered (`worker_identity.py`).

`/health`, `/docs`, `/openapi.json` and the dashboard's page and assets are open: a load balancer
checks health without a token, and the page asks for one when its first API call answers 401.
With no token configured at all, every route is open (the CLI then listens on loopback only).

Each router's access is declared where the app includes it (`create_app`); `AccessIndex` knows it
for every route and refuses to build if an API route has none. `Authorizer`, an ASGI middleware
in front of everything else, checks it before a byte of the body is read: no token or an unknown
one is 401 with `WWW-Authenticate: Bearer`, a known token whose role may not call the route 403.
Tokens are compared as SHA-256 digests with `hmac.compare_digest`, against every configured
token, without stopping at the first match: the time taken does not depend on which token, if
any, was close. Tokens are never logged.

Configuration (read by the CLI): one `role:token` per line in a file, `#` comments allowed, or
`role:token,role:token` in an environment variable. Several tokens may share a role (rotation).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from fastapi import APIRouter
from fastapi.routing import APIRoute
from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from conveyor.server.worker_identity import HEADER, WorkerSecrets, acting_for, presented_secret

log = logging.getLogger(__name__)

MIN_TOKEN_CHARS = 16
MAX_TOKEN_CHARS = 4096
TOKEN_SYNTAX = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
"""RFC 6750's b64token: what may follow `Bearer ` in a header without quoting."""


class Role(StrEnum):
    CLIENT = "client"
    WORKER = "worker"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Access:
    """Who may call a group of routes: the roles named here (admin is always among them)."""

    name: str
    roles: frozenset[Role]

    def permits(self, role: Role) -> bool:
        return role in self.roles

    def describe(self) -> str:
        return " or ".join(sorted(self.roles))


CLIENT = Access("client", frozenset({Role.CLIENT, Role.ADMIN}))
WORKER = Access("worker", frozenset({Role.WORKER, Role.ADMIN}))
ADMIN = Access("admin", frozenset({Role.ADMIN}))
ANY = Access("any", frozenset(Role))
OPEN: Access | None = None


class TokenConfigError(ValueError):
    """A tokens file or variable that cannot be used; the message names the place, never a token."""


@dataclass(frozen=True, slots=True)
class TokenEntry:
    role: Role
    token: str = field(repr=False)


def parse_tokens_file(text: str, source: str) -> list[TokenEntry]:
    """One `role:token` per line; blank lines and `#` comments are skipped."""
    lines = (line.split("#", 1)[0] for line in text.splitlines())
    return _parse(lines, f"{source} line")


def parse_tokens_variable(text: str, source: str) -> list[TokenEntry]:
    """`role:token` items separated by commas; blank items are skipped."""
    return _parse(text.split(","), f"{source} item")


def _parse(items: Iterable[str], where: str) -> list[TokenEntry]:
    """Raises TokenConfigError naming the place for an unknown role, a token that is too short
    or not RFC 6750 syntax, or a token listed twice; the message never holds a token."""
    entries: list[TokenEntry] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(items, start=1):
        item = raw.strip()
        if not item:
            continue
        here = f"{where} {number}"
        role_name, colon, token = item.partition(":")
        role_name, token = role_name.strip().lower(), token.strip()
        if not colon:
            raise TokenConfigError(f"{here}: expected ROLE:TOKEN (roles: {_ROLES})")
        try:
            role = Role(role_name)
        except ValueError:
            raise TokenConfigError(f"{here}: {role_name!r} is not a role ({_ROLES})") from None
        if len(token) < MIN_TOKEN_CHARS:
            raise TokenConfigError(
                f"{here}: the {role} token has {len(token)} characters; at least "
                f"{MIN_TOKEN_CHARS} are required (make one with "
                "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
            )
        if len(token) > MAX_TOKEN_CHARS or not TOKEN_SYNTAX.fullmatch(token):
            raise TokenConfigError(
                f"{here}: the {role} token may only hold letters, digits and - . _ ~ + / "
                f"(then = padding), at most {MAX_TOKEN_CHARS} characters"
            )
        if token in seen:
            raise TokenConfigError(
                f"{here}: the same token is listed before ({where} {seen[token]})"
            )
        seen[token] = number
        entries.append(TokenEntry(role, token))
    return entries


_ROLES = ", ".join(role.value for role in Role)


def _digest(token: bytes) -> bytes:
    return hashlib.sha256(token).digest()


class Tokens:
    """The configured tokens, kept as digests; empty means the API is open."""

    def __init__(self, entries: Iterable[TokenEntry] = ()) -> None:
        self._digests = tuple((e.role, _digest(e.token.encode())) for e in entries)

    def __bool__(self) -> bool:
        return bool(self._digests)

    def __len__(self) -> int:
        return len(self._digests)

    def role_of(self, presented: bytes) -> Role | None:
        """The role of the token presented, or None. Constant time in the token's value: it is
        compared, as a fixed-length digest, with every configured token; no early exit."""
        given = _digest(presented)
        found: Role | None = None
        for role, digest in self._digests:
            if hmac.compare_digest(given, digest):
                found = role
        return found


def token_for(entries: Sequence[TokenEntry], *roles: Role) -> str | None:
    """The first token of the first of `roles` that has one (e.g. for local workers)."""
    for role in roles:
        for entry in entries:
            if entry.role is role:
                return entry.token
    return None


# ---- the check --------------------------------------------------------------------------------


class AccessIndex:
    """Which access each request needs, from the routers the app includes and their access.

    A request takes the access of the first route whose path and method match, as FastAPI
    matches them; a wrong method, that of the first route with its path (it is then 405 for
    whoever may call that path). A path no route has is open only when listed in `open_paths`
    or under `open_prefixes` (the schema, mounted assets); any other needs a known token of any
    role, so that a route this index failed to see would be closed rather than open.
    """

    def __init__(
        self,
        routers: Sequence[tuple[str, APIRouter, Access | None]],
        *,
        open_paths: Iterable[str] = (),
        open_prefixes: Iterable[str] = (),
    ) -> None:
        self._routes: list[
            tuple[re.Pattern[str], frozenset[str], Access | None, APIRoute, str]
        ] = []
        for prefix, router, access in routers:
            for route in router.routes:
                if not isinstance(route, APIRoute):
                    raise TypeError(f"{prefix}{getattr(route, 'path', route)} is not an API route")
                regex, path_format, _ = compile_path(prefix + route.path)
                methods = frozenset(route.methods or ())
                self._routes.append((regex, methods, access, route, path_format))
        self._open_paths = frozenset(open_paths)
        self._open_prefixes = tuple(p.rstrip("/") + "/" for p in open_prefixes)

    def access(self, method: str, path: str) -> Access | None:
        """The access a `method` request of `path` needs; None: open."""
        first_of_path: Access | _Unset | None = _UNSET
        for regex, methods, access, _, _ in self._routes:
            if regex.match(path):
                if method in methods:
                    return access
                if first_of_path is _UNSET:
                    first_of_path = access
        if not isinstance(first_of_path, _Unset):
            return first_of_path
        if path in self._open_paths or path.startswith(self._open_prefixes):
            return OPEN
        return ANY

    def operations(self) -> Iterator[tuple[str, str, APIRoute, Access | None]]:
        """(OpenAPI path, method, route, access) of every route."""
        for _, methods, access, route, path_format in self._routes:
            for method in sorted(methods):
                yield path_format, method, route, access


class _Unset:
    pass


_UNSET = _Unset()


class Authorizer:
    """ASGI middleware: 401 without a known token, 403 when its role may not call the route."""

    def __init__(
        self,
        app: ASGIApp,
        tokens: Tokens,
        index: AccessIndex,
        identities: WorkerSecrets | None = None,
    ) -> None:
        self.app = app
        self.tokens = tokens
        self.index = index
        self.identities = identities

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.tokens:
            await self.app(scope, receive, send)
            return
        access = self.index.access(scope["method"], _route_path(scope))
        if access is None:
            await self.app(scope, receive, send)
            return
        presented = bearer_token(scope)
        role = self.tokens.role_of(presented) if presented is not None else None
        if role is None:
            reason = "no bearer token" if presented is None else "an unknown bearer token"
            self._log(scope, reason)
            challenge = 'Bearer realm="conveyor"'
            if presented is not None:
                challenge += ', error="invalid_token"'
            await _refuse(
                send,
                401,
                f"this request needs a {access.describe()} token "
                "(header `Authorization: Bearer TOKEN`)"
                + ("; the one given is not known to this server" if presented is not None else ""),
                challenge,
            )
            return
        if not access.permits(role):
            self._log(scope, f"role {role} may not call this route", role=role)
            await _refuse(
                send,
                403,
                f"a {role} token may not call {scope['method']} {scope['path']}; "
                f"it needs a {access.describe()} token",
                'Bearer realm="conveyor", error="insufficient_scope"',
            )
            return
        worker_id = acting_for(scope["method"], _route_path(scope))
        if (
            role is not Role.ADMIN
            and worker_id is not None
            and self.identities is not None
            and not self.identities.holds(worker_id, presented_secret(scope["headers"]))
        ):
            self._log(scope, f"no valid secret of worker {worker_id}", role=role)
            await _refuse(
                send,
                403,
                f"this call acts for worker {worker_id}: send the secret its registration "
                f"answered, in the {HEADER} header (or use an admin token)",
                'Bearer realm="conveyor", error="insufficient_scope"',
            )
            return
        await self.app(scope, receive, send)

    @staticmethod
    def _log(scope: Scope, reason: str, role: Role | None = None) -> None:
        client = scope.get("client")
        log.info(
            f"refused {scope['method']} {scope['path']}: {reason}",
            extra={
                "method": scope["method"],
                "path": scope["path"],
                "client": f"{client[0]}:{client[1]}" if client else None,
                "role": role.value if role else None,
            },
        )


def _route_path(scope: Scope) -> str:
    """The path as the app's routes see it: without the root path a proxy mounted it under."""
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    return path[len(root_path) :] or "/" if root_path and path.startswith(root_path) else path


def bearer_token(scope: Scope) -> bytes | None:
    """The token of the first `Authorization: Bearer ...` header, or None."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.strip().partition(b" ")
            # Another scheme (Basic ...) carries no token of ours: the same as an unknown one.
            return token.strip() if scheme.lower() == b"bearer" else b""
    return None


async def _refuse(send: Send, status: int, detail: str, challenge: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", challenge.encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


# ---- the OpenAPI schema -----------------------------------------------------------------------

SCHEME = "bearer"


def document(schema: dict[str, object], index: AccessIndex) -> None:
    """Declare the bearer scheme, and on every protected operation its roles, 401 and 403.

    Only for a server with tokens: an open server's schema asks for none, as it needs none.
    """
    components = schema.setdefault("components", {})
    assert isinstance(components, dict)
    components.setdefault("securitySchemes", {})[SCHEME] = {
        "type": "http",
        "scheme": "bearer",
        "description": "A token configured on the server (--tokens-file or CONVEYOR_TOKENS); "
        "its role (client, worker or admin) decides which operations it may call.",
    }
    paths = schema.get("paths", {})
    assert isinstance(paths, dict)
    challenge = {
        "WWW-Authenticate": {
            "description": "`Bearer realm=...`, with `error=...` when a token was given.",
            "schema": {"type": "string"},
        }
    }
    for path, method, route, access in index.operations():
        operation = paths.get(path, {}).get(method.lower())
        if access is None or not route.include_in_schema or operation is None:
            continue
        operation["security"] = [{SCHEME: []}]
        operation["x-roles"] = [role.value for role in sorted(access.roles)]
        responses = operation.setdefault("responses", {})
        responses["401"] = {
            "description": "No bearer token, or one this server does not know.",
            "headers": challenge,
            "content": {"application/json": {"schema": _ERROR}},
        }
        responses["403"] = {
            "description": f"The token's role may not call this (it needs {access.describe()}).",
            "headers": challenge,
            "content": {"application/json": {"schema": _ERROR}},
        }


_ERROR = {
    "type": "object",
    "properties": {"detail": {"type": "string"}},
    "required": ["detail"],
}
