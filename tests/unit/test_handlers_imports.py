"""`--allow-module PREFIX` runs functions defined under PREFIX, and nothing reached through them.

`tests.helpers.myapp` stands in for a user's package: it imports `os`, `subprocess` and `logging`,
re-exports `json.dumps`, `os.system` and a partial object, and defines functions, a class and an
instance. Only what it defines, as a Python function (or a class's function), may run.
"""

from __future__ import annotations

import sys
from typing import Any

import pytest

from conveyor.errors import HandlerError
from conveyor.handlers import HandlerPolicy, check_handler, resolve_handler

APP = "tests.helpers.myapp"
MYAPP = HandlerPolicy(allow_modules=(APP,))
ANY = HandlerPolicy(allow_modules=("*",))

ALLOWED = {
    "function": (f"{APP}:add", (2, 3), 5),
    "function-in-a-submodule": (f"{APP}.jobs:work", (1,), 2),
    "re-exported-from-a-submodule": (f"{APP}:work", (1,), 2),
    "staticmethod": (f"{APP}:Tools.double", (4,), 8),
    "classmethod": (f"{APP}:Tools.name", (), "Tools"),
    "nested-class": (f"{APP}:Tools.Inner.deep", (), "deep"),
    "task-decorated": (f"{APP}:marked", (4,), 8),
}


@pytest.mark.parametrize("policy", [MYAPP, ANY], ids=["prefix", "any-module"])
@pytest.mark.parametrize(("name", "args", "expected"), ALLOWED.values(), ids=ALLOWED.keys())
def test_functions_the_package_defines_run(
    policy: HandlerPolicy, name: str, args: tuple[Any, ...], expected: Any
) -> None:
    assert resolve_handler(name, policy)(*args) == expected


REFUSED = {
    "module-hop-os-system": (f"{APP}:os.system", "'tests.helpers.myapp.os' is a module"),
    "module-hop-subprocess": (f"{APP}:subprocess.getoutput", "is a module"),
    "two-module-hops": (f"{APP}:logging.os.getcwd", "'tests.helpers.myapp.logging' is a module"),
    "module-hop-through-a-class": (f"{APP}:Tools.os.system", "is a module"),
    "re-exported-builtin": (f"{APP}:system", "not a Python function"),
    "re-exported-foreign-function": (f"{APP}:dumps", "defined in 'json'"),
    "partial-object": (f"{APP}:shout", "not a Python function"),
    "foreign-class-method": (f"{APP}:JSONDecoder.decode", "defined in 'json"),
    "a-class-itself": (f"{APP}:Tools", "a class"),
    "through-an-instance": (f"{APP}:tools.plain", "'tests.helpers.myapp:tools' is a Tools"),
    "private-name": (f"{APP}:_private", "starts with '_'"),
    "dunder-hop": (f"{APP}:add.__globals__", "starts with '_'"),
    "dunder-on-a-class": (f"{APP}:Tools.__init__", "starts with '_'"),
}


@pytest.mark.parametrize(("name", "message"), REFUSED.values(), ids=REFUSED.keys())
def test_what_the_package_only_reaches_is_refused(name: str, message: str) -> None:
    with pytest.raises(HandlerError) as caught:
        resolve_handler(name, MYAPP)
    assert message in str(caught.value), str(caught.value)


def test_a_function_defined_outside_a_narrower_prefix_is_refused() -> None:
    # myapp.api re-exports myapp.jobs.work: allowed for "myapp", not for "myapp.api" alone.
    assert resolve_handler(f"{APP}.api:work", MYAPP)(1) == 2
    with pytest.raises(HandlerError, match=f"defined in '{APP}.jobs'"):
        resolve_handler(f"{APP}.api:work", HandlerPolicy(allow_modules=(f"{APP}.api",)))


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (f"{APP}:os.system", "is a module"),
        (f"{APP}:logging.os.getcwd", "is a module"),
        ("os:system", "not a Python function"),
        ("math:sqrt", "not a Python function"),
        (f"{APP}:shout", "not a Python function"),
        (f"{APP}:_private", "starts with '_'"),
        ("json:_default_encoder", "starts with '_'"),
    ],
)
def test_any_module_still_refuses_hops_private_names_and_builtins(name: str, message: str) -> None:
    with pytest.raises(HandlerError, match=message):
        resolve_handler(name, ANY)


def test_any_module_allows_a_function_whatever_module_defines_it() -> None:
    assert resolve_handler("json:dumps", ANY)([1]) == "[1]"
    assert resolve_handler(f"{APP}:dumps", ANY)([1]) == "[1]"


@pytest.mark.parametrize("name", ["tests.helpers.never_imported_module:_f", "x:a._b", "x:__c__"])
def test_private_names_are_refused_before_importing(name: str) -> None:
    with pytest.raises(HandlerError, match="starts with '_'"):
        check_handler(name, ANY)
    assert "tests.helpers.never_imported_module" not in sys.modules
