"""Which callable a handler name means, and whether this worker is allowed to run it.

A handler name is either a built-in (`"echo"`, `"sha256"`, `"files.read"`) or an import reference
`"package.module:function"` (optionally `"package.module:Class.method"`). Import references run
arbitrary code, so a worker refuses them unless its policy allows the module's package; `shell`
needs `allow_shell`, and the file handlers need a `files_root`.

An allowed package is not a door to everything it imports: the reference must name a Python
function that a module under the allowed prefix defines (checked on the function's `__module__`),
reached through nothing but classes defined there too. A hop through a module (`myapp:os.system`),
a name starting with `_`, a builtin, a partial object or another package's function re-exported by
the allowed one are refused. With `"*"` any module may define it, but the other rules hold.
"""

from __future__ import annotations

import functools
import importlib
import keyword
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import FunctionType, MappingProxyType, MethodType, ModuleType
from typing import cast

from conveyor.core.capabilities import Capabilities
from conveyor.core.types import JSON
from conveyor.errors import HandlerError
from conveyor.handlers import builtin, files, folders, http, shell
from conveyor.handlers.network import NetworkAccess
from conveyor.handlers.root import FilesRoot

BUILTIN_HANDLERS: Mapping[str, Callable[..., JSON]] = MappingProxyType(
    {
        "echo": builtin.echo,
        "fail": builtin.fail,
        "sha256": builtin.sha256,
        "sleep": builtin.sleep,
        "shell": shell.shell,
        "http": http.http,
        **files.HANDLERS,
        **folders.HANDLERS,
    }
)
"""Built-in handlers by name. Read-only: handlers are added here in code, not at run time."""

SHELL_HANDLERS: frozenset[str] = frozenset({"shell"})
"""Built-ins that run commands: refused unless the policy has allow_shell."""

FILES_HANDLERS: frozenset[str] = frozenset(files.HANDLERS) | frozenset(folders.HANDLERS)
"""Built-ins that work on files: refused unless the policy has a files_root."""

ROOTED_HANDLERS: frozenset[str] = FILES_HANDLERS | {"sha256"}
"""Built-ins whose first, positional-only argument is the FilesRoot (or None, for sha256, which
needs it only to hash a file). resolve_handler binds it; a task's arguments cannot replace it."""

NETWORK_HANDLERS: frozenset[str] = frozenset({"http"})
"""Built-ins whose first, positional-only argument is the NetworkAccess the policy allows, bound
by resolve_handler in the same way."""

BOUND_HANDLERS: frozenset[str] = ROOTED_HANDLERS | NETWORK_HANDLERS

ANY_MODULE = "*"


@dataclass(frozen=True, slots=True)
class HandlerPolicy:
    """What a worker agrees to run beyond the safe built-ins.

    `allow_modules` holds package prefixes: "myapp" allows "myapp:f" and "myapp.jobs:f" but not
    "myappx.jobs:f"; "*" allows any module. `files_root` is the absolute path of the only
    directory the file handlers may touch; None refuses them. `allow_networks` holds networks
    (CIDRs such as "10.0.0.0/8" or "127.0.0.1") and host names that the `http` handler may reach
    although they are not public addresses (conveyor.handlers.network).
    """

    allow_shell: bool = False
    allow_modules: tuple[str, ...] = ()
    files_root: str | None = None
    allow_networks: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # A bare string would be read as a tuple of one-letter prefixes: refuse it loudly.
        if isinstance(self.allow_modules, str):
            raise TypeError("allow_modules must be a tuple of module prefixes, not a string")
        prefixes = tuple(cast(Iterable[str], self.allow_modules))
        for prefix in prefixes:
            if prefix != ANY_MODULE and not _is_dotted_identifier(prefix):
                raise ValueError(
                    f"invalid module prefix {prefix!r}: use a package name such as 'myapp' "
                    f"or 'myapp.jobs', or {ANY_MODULE!r} to allow any module"
                )
        object.__setattr__(self, "allow_modules", prefixes)
        if isinstance(self.allow_networks, str):
            raise TypeError("allow_networks must be a tuple of CIDRs or host names, not a string")
        networks = tuple(cast(Iterable[str], self.allow_networks))
        NetworkAccess.parse(networks)  # ValueError for an entry that is neither
        object.__setattr__(self, "allow_networks", networks)
        if self.files_root is not None and (
            not isinstance(self.files_root, str) or not os.path.isabs(self.files_root)
        ):
            raise ValueError(f"files_root must be an absolute path, got {self.files_root!r}")

    def allows_module(self, module: str) -> bool:
        return any(
            prefix == ANY_MODULE or module == prefix or module.startswith(prefix + ".")
            for prefix in self.allow_modules
        )


def check_handler(name: str, policy: HandlerPolicy) -> None:
    """Raise HandlerError unless `policy` lets a worker run `name`. Imports nothing.

    The parent process calls this before dispatching, so a refused task fails with a clear
    message without ever reaching a child process.
    """
    if not isinstance(name, str):
        raise HandlerError(f"handler name must be a string, got {type(name).__name__}")
    if ":" in name:
        module, attributes = _split_reference(name)
        private = [part for part in attributes if part.startswith("_")]
        if private:
            raise HandlerError(
                f"handler {name!r} is refused: {private[0]!r} starts with '_'; "
                "name a public function of your module"
            )
        if not policy.allows_module(module):
            package = module.split(".")[0]
            raise HandlerError(
                f"handler {name!r} is an arbitrary import; "
                f"start the worker with --allow-module {package} to allow it"
            )
        return
    if name not in BUILTIN_HANDLERS:
        known = ", ".join(sorted(BUILTIN_HANDLERS))
        hint = ""
        if _is_dotted_identifier(name) and "." in name:
            module, _, function = name.rpartition(".")
            hint = f" (did you mean '{module}:{function}'?)"
        raise HandlerError(
            f"unknown handler {name!r}{hint}; built-in handlers are: {known}; "
            "to run your own function use 'package.module:function'"
        )
    if name in SHELL_HANDLERS and not policy.allow_shell:
        raise HandlerError(
            f"handler {name!r} runs commands; start the worker with --allow shell to allow it"
        )
    if name in FILES_HANDLERS and policy.files_root is None:
        raise HandlerError(
            f"handler {name!r} works on files inside a root directory; "
            "start the worker with --files-root DIR to allow it"
        )


def advertised(policy: HandlerPolicy) -> Capabilities:
    """What a worker with `policy` runs, as it tells the server at registration: the built-ins
    check_handler lets through, the module prefixes, the allowances. The server then leases it
    only tasks it runs (conveyor.core.capabilities)."""
    runs: list[str] = []
    for name in BUILTIN_HANDLERS:
        try:
            check_handler(name, policy)
        except HandlerError:
            continue
        runs.append(name)
    return Capabilities(
        handlers=tuple(runs),
        modules=policy.allow_modules,
        shell=policy.allow_shell,
        files=policy.files_root is not None,
        networks=policy.allow_networks,
    )


def resolve_handler(name: str, policy: HandlerPolicy) -> Callable[..., JSON]:
    """Return the callable `name` means, importing its module if the policy allows it."""
    check_handler(name, policy)
    if ":" not in name:
        # Bound here, in the process that runs it: no global state, one root per policy.
        if name in ROOTED_HANDLERS:
            return functools.partial(BUILTIN_HANDLERS[name], _files_root(policy))
        if name in NETWORK_HANDLERS:
            access = NetworkAccess.parse(policy.allow_networks)
            return functools.partial(BUILTIN_HANDLERS[name], access)
        return BUILTIN_HANDLERS[name]
    module_name, attributes = _split_reference(name)
    try:
        target: object = importlib.import_module(module_name)
    except Exception as exc:
        raise HandlerError(
            f"handler {name!r} could not be loaded: importing {module_name!r} raised "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    for depth, attribute in enumerate(attributes):
        try:
            target = getattr(target, attribute)
        except AttributeError as exc:
            owner = ".".join([module_name, *attributes[:depth]])
            raise HandlerError(
                f"handler {name!r} could not be loaded: {owner!r} has no attribute {attribute!r}"
            ) from exc
        if depth < len(attributes) - 1:
            _check_hop(name, _shown(module_name, attributes[: depth + 1]), target, policy)
    return _checked_function(name, target, policy)


def _shown(module_name: str, attributes: list[str]) -> str:
    """`package.module` then the attributes, as error messages name a step of the reference."""
    if not attributes:
        return module_name
    return f"{module_name}:{'.'.join(attributes)}"


def _check_hop(name: str, shown: str, hop: object, policy: HandlerPolicy) -> None:
    """Between the module and the function there may be classes defined under the prefix only."""
    if isinstance(hop, ModuleType):
        module = shown.replace(":", ".")
        raise HandlerError(
            f"handler {name!r} is refused: {module!r} is a module reached through another one; "
            f"name a function of the module that defines it ('{hop.__name__}:...'), "
            "if the worker allows that module"
        )
    if not isinstance(hop, type):
        raise HandlerError(
            f"handler {name!r} is refused: {shown!r} is a {type(hop).__name__} object, "
            "not a class; name a module-level function, or Class.function"
        )
    _check_defined_under_prefix(name, shown, hop.__module__, policy)


def _checked_function(name: str, target: object, policy: HandlerPolicy) -> Callable[..., JSON]:
    """The function to call, if `target` is a Python function defined under the allowed prefix."""
    if isinstance(target, ModuleType):
        raise HandlerError(
            f"handler {name!r} is refused: it names a module; name a function defined in it"
        )
    # @task wraps a function in a TaskFunction; the worker runs the function it wraps. A module
    # that used @task has imported the decorator: looked up, not imported (the client's imports
    # would cost every child a third of a second).
    decorator = sys.modules.get("conveyor.client.decorator")
    if decorator is not None and isinstance(target, decorator.TaskFunction):
        target = target.fn
    function = target
    if isinstance(target, MethodType) and isinstance(target.__self__, type):
        function = target.__func__  # a classmethod, bound to its class
    if not isinstance(function, FunctionType):
        if isinstance(target, type):
            raise HandlerError(
                f"handler {name!r} is refused: it is a class; name a function (or Class.function)"
            )
        if not callable(target):
            raise HandlerError(
                f"handler {name!r} is not callable: it is a {type(target).__name__}; "
                "point it at a function"
            )
        raise HandlerError(
            f"handler {name!r} is refused: it is a {type(target).__name__}, not a Python "
            "function defined in an allowed module; define a function there that calls it"
        )
    _check_defined_under_prefix(name, name, function.__module__, policy)
    return cast(Callable[..., JSON], target)


def _check_defined_under_prefix(
    name: str, shown: str, module: object, policy: HandlerPolicy
) -> None:
    if not isinstance(module, str) or not policy.allows_module(module):
        raise HandlerError(
            f"handler {name!r} is refused: {shown!r} is defined in {module!r}, which the worker "
            "does not allow; name it by the module that defines it, if the worker allows that"
        )


def _files_root(policy: HandlerPolicy) -> FilesRoot | None:
    if policy.files_root is None:
        return None
    try:
        return FilesRoot.at(policy.files_root)
    except OSError as exc:
        raise HandlerError(
            f"{exc}; start the worker with --files-root pointing at an existing directory"
        ) from exc


def _split_reference(name: str) -> tuple[str, list[str]]:
    """Split 'package.module:function' into the module and the attribute path, strictly."""
    module, colon, attribute_path = name.partition(":")
    if (
        not colon
        or ":" in attribute_path
        or not _is_dotted_identifier(module)
        or not _is_dotted_identifier(attribute_path)
    ):
        raise HandlerError(
            f"invalid handler name {name!r}: expected a built-in name or "
            "'package.module:function' (dotted identifiers, one colon)"
        )
    return module, attribute_path.split(".")


def _is_dotted_identifier(text: str) -> bool:
    return all(part.isidentifier() and not keyword.iskeyword(part) for part in text.split("."))
