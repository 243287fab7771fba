"""Bearer tokens with roles, and who may call what.

Each operation's access is declared with it (conveyor.api.operations; the roles are described in
conveyor.api.access); the routes that are not operations (the docs, the dashboard's page, the
metrics) declare theirs where the app includes them. `AccessIndex` knows it for every route and
refuses to build if an API route has none. `Authorizer`, an ASGI middleware in front of
everything else, checks it before a byte of the body is read: no token or an unknown one is 401
with `WWW-Authenticate: Bearer`, a known token whose role may not call the route 403, and a
call acting for a worker without that worker's secret 403. The persistent connection applies
the same two checks (`refusal`, `identity_refusal`) to each call it carries.

Tokens are compared as SHA-256 digests with `hmac.compare_digest`, against every configured
token, without stopping at the first match: the time taken does not depend on which token, if
any, was close. Tokens are never logged. `/health`, `/docs`, `/openapi.json` and the
dashboard's page and assets are open: a load balancer checks health without a token, and the
page asks for one when its first API call answers 401. With no token configured at all, every
route is open (the CLI then listens on loopback only), and every caller acts as an admin.

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

from fastapi.routing import APIRoute
from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from conveyor.api.access import ADMIN, ANY, CLIENT, OPEN, WORKER, Access, Role
from conveyor.api.operations import Operation
from conveyor.server.worker_identity import HEADER, WorkerSecrets, presented_secret

__all__ = [
    "ADMIN", "ANY", "CLIENT", "OPEN", "WORKER", "Access", "AccessIndex", "Authorizer", "Refusal",
    "Role", "TokenConfigError", "TokenEntry", "Tokens", "bearer_token", "identity_refusal",
    "parse_tokens_file", "parse_tokens_variable", "refusal", "token_for",
]  # fmt: skip

log = logging.getLogger(__name__)

MIN_TOKEN_CHARS = 16
MAX_TOKEN_CHARS = 4096
TOKEN_SYNTAX = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
"""RFC 6750's b64token: what may follow `Bearer ` in a header without quoting."""


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


@dataclass(frozen=True, slots=True)
class Guarded:
    """What a route needs: its access, and the path parameter naming the worker it acts for."""

    access: Access | None
    acts_for: str | None = None

    @classmethod
    def of(cls, op: Operation) -> Guarded:
        return cls(op.access, "worker_id" if op.acts_for_worker else None)


class AccessIndex:
    """Which access each request needs, from the app's routes and what each declares.

    A request takes the access of the first route whose path and method match, as FastAPI
    matches them; a wrong method, that of the first route with its path (it is then 405 for
    whoever may call that path). A path no route has is open only when listed in `open_paths`
    or under `open_prefixes` (the schema, mounted assets); any other needs a known token of any
    role, so that a route this index failed to see would be closed rather than open.
    """

    def __init__(
        self,
        routes: Sequence[tuple[APIRoute, Guarded]],
        *,
        open_paths: Iterable[str] = (),
        open_prefixes: Iterable[str] = (),
    ) -> None:
        self._routes: list[tuple[re.Pattern[str], frozenset[str], Guarded, APIRoute, str]] = []
        for route, guarded in routes:
            regex, path_format, _ = compile_path(route.path)
            self._routes.append(
                (regex, frozenset(route.methods or ()), guarded, route, path_format)
            )
        self._open_paths = frozenset(open_paths)
        self._open_prefixes = tuple(p.rstrip("/") + "/" for p in open_prefixes)

    def guarded(self, method: str, path: str) -> tuple[Guarded, dict[str, str]]:
        """What a `method` request of `path` needs, and the route's path parameters."""
        first_of_path: tuple[Guarded, dict[str, str]] | None = None
        for regex, methods, guarded, _, _ in self._routes:
            if match := regex.match(path):
                if method in methods:
                    return guarded, match.groupdict()
                if first_of_path is None:
                    first_of_path = (Guarded(guarded.access), {})
        if first_of_path is not None:
            return first_of_path
        if path in self._open_paths or path.startswith(self._open_prefixes):
            return Guarded(OPEN), {}
        return Guarded(ANY), {}

    def access(self, method: str, path: str) -> Access | None:
        """The access a `method` request of `path` needs; None: open."""
        return self.guarded(method, path)[0].access

    def operations(self) -> Iterator[tuple[str, str, APIRoute, Access | None]]:
        """(OpenAPI path, method, route, access) of every route."""
        for _, methods, guarded, route, path_format in self._routes:
            for method in sorted(methods):
                yield path_format, method, route, guarded.access


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a call is refused: 401 (no token, or one this server does not know) or 403."""

    status: int
    detail: str
    challenge: str
    reason: str
    """For the log, never holding a token."""


def refusal(
    access: Access | None, tokens: Tokens, presented: bytes | None, what: str
) -> tuple[Role | None, Refusal | None]:
    """The caller's role, and why it may not call `what` (a route, an operation) if it may not.
    With no token configured every caller may call anything (role None: an admin's rights)."""
    if not tokens or access is None:
        return None, None
    role = tokens.role_of(presented) if presented is not None else None
    if role is None:
        challenge = 'Bearer realm="conveyor"'
        if presented is not None:
            challenge += ', error="invalid_token"'
        return None, Refusal(
            401,
            f"this request needs a {access.describe()} token (header `Authorization: Bearer TOKEN`)"
            + ("; the one given is not known to this server" if presented is not None else ""),
            challenge,
            "no bearer token" if presented is None else "an unknown bearer token",
        )
    if not access.permits(role):
        return role, Refusal(
            403,
            f"a {role} token may not call {what}; it needs a {access.describe()} token",
            _INSUFFICIENT,
            f"role {role} may not call this route",
        )
    return role, None


def identity_refusal(
    role: Role | None, worker_id: str, secret: bytes | None, identities: WorkerSecrets | None
) -> Refusal | None:
    """Why a call acting for worker `worker_id` is refused, if it is: a caller that is not an
    admin must hold that worker's secret (conveyor.server.worker_identity)."""
    if role is None or role is Role.ADMIN or identities is None:
        return None
    if identities.holds(worker_id, secret):
        return None
    return Refusal(
        403,
        f"this call acts for worker {worker_id}: send the secret its registration answered, in "
        f"the {HEADER} header (or use an admin token)",
        _INSUFFICIENT,
        f"no valid secret of worker {worker_id}",
    )


_INSUFFICIENT = 'Bearer realm="conveyor", error="insufficient_scope"'


class Authorizer:
    """ASGI middleware: the checks of `refusal` and `identity_refusal` on every HTTP request."""

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
        guarded, path_params = self.index.guarded(scope["method"], _route_path(scope))
        role, refused = refusal(
            guarded.access, self.tokens, bearer_token(scope), f"{scope['method']} {scope['path']}"
        )
        if refused is None and guarded.acts_for is not None:
            refused = identity_refusal(
                role,
                path_params.get(guarded.acts_for, ""),
                presented_secret(scope["headers"]),
                self.identities,
            )
        if refused is not None:
            self._log(scope, refused.reason, role=role)
            await _refuse(send, refused.status, refused.detail, refused.challenge)
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
