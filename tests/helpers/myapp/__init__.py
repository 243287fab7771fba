"""A stand-in for a user's package, for the tests of `--allow-module`: what it defines may run as a
handler; what it merely imports or re-exports (modules, other packages' functions, builtins,
partial objects) may not.
"""

from __future__ import annotations

import functools
import logging  # noqa: F401  (reached as myapp:logging.os.getcwd)
import os
import subprocess  # noqa: F401  (reached as myapp:subprocess.getoutput)
from json import JSONDecoder, dumps  # noqa: F401  (defined in json, re-exported here)
from os import system  # noqa: F401  (a builtin, re-exported here)

from conveyor.client import task
from tests.helpers.myapp.jobs import work  # noqa: F401  (defined in myapp.jobs)


def add(a: int, b: int) -> int:
    return a + b


def _private() -> str:
    return "private"


shout = functools.partial(str.upper)
"""A partial object: callable, but not a function this package defines."""


@task
def marked(x: int) -> int:
    return x * 2


class Tools:
    os = os  # a module, reached through the class

    def plain(self: object) -> str:
        return "plain"

    @staticmethod
    def double(x: int) -> int:
        return x * 2

    @classmethod
    def name(cls) -> str:
        return cls.__name__

    class Inner:
        @staticmethod
        def deep() -> str:
            return "deep"


tools = Tools()
"""An instance: its methods are reached through an object, not a class."""
