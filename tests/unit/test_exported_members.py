"""The public API: what `import conveyor` and the packages users import give, pinned.

Each module's `__all__` is the list stated here (adding or removing a public name is a decision,
made in this file too), every name in it exists, and nothing public defined by Conveyor is
missing from it. The front door imports its names on first use; its table of homes and the
imports type checkers read must say the same.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

import conveyor
import conveyor.errors

FRONT_DOOR = [
    "AsyncClient",
    "AttemptOut",
    "Client",
    "ConflictError",
    "ConveyorError",
    "CycleError",
    "DuplicateKeyError",
    "Durability",
    "HandlerError",
    "HealthOut",
    "InvalidSpecError",
    "Job",
    "Misfire",
    "MonitorOut",
    "NotFoundError",
    "Outcome",
    "Progress",
    "Reason",
    "ResultOut",
    "RetryPolicy",
    "RunSummary",
    "ScheduleOut",
    "Scheduler",
    "ServerUnavailableError",
    "StaleTokenError",
    "StatusOut",
    "StoreBusyError",
    "StoreError",
    "StoreRefusedError",
    "TaskDetail",
    "TaskFunction",
    "TaskOut",
    "TaskPage",
    "TaskSpec",
    "TaskState",
    "WaitCode",
    "WaitReason",
    "WhyAnswer",
    "WorkerOut",
    "task",
]

PACKAGES = {
    "conveyor": FRONT_DOOR,
    "conveyor.client": [
        "AsyncClient",
        "Client",
        "SpecOptions",
        "TaskFunction",
        "WorkerConnection",
        "task",
    ],
    "conveyor.embedded": ["Job", "Progress", "RunSummary", "Scheduler"],
    "conveyor.errors": [
        "ConflictError",
        "ConveyorError",
        "CycleError",
        "DuplicateKeyError",
        "HandlerError",
        "InvalidSpecError",
        "NotFoundError",
        "ServerUnavailableError",
        "StaleTokenError",
        "StoreBusyError",
        "StoreError",
        "StoreRefusedError",
    ],
    "conveyor.testing": [
        "Cluster",
        "ServerExitedError",
        "free_port",
        "interrupt_on_sigterm",
        "pid_gone",
        "wait_until",
    ],
}


def load(name: str) -> ModuleType:
    module = importlib.import_module(name)
    for member in getattr(module, "__all__", ()):
        getattr(module, member)  # the front door imports on first use: load everything
    return module


@pytest.mark.parametrize("name", PACKAGES)
def test_all_is_the_stated_list_sorted(name: str) -> None:
    module = load(name)
    assert module.__all__ == PACKAGES[name]
    assert module.__all__ == sorted(module.__all__, key=lambda n: (n[0].islower(), n))


@pytest.mark.parametrize("name", PACKAGES)
def test_every_exported_name_exists(name: str) -> None:
    module = load(name)
    missing = [member for member in module.__all__ if not hasattr(module, member)]
    assert missing == []


@pytest.mark.parametrize("name", PACKAGES)
def test_nothing_public_of_conveyors_is_left_out(name: str) -> None:
    """A public name bound in the module to something Conveyor defines is in `__all__`
    (submodules, and what comes from other libraries, such as `Path`, are not)."""
    module = load(name)
    public = {
        member
        for member, value in vars(module).items()
        if not member.startswith("_")
        and not isinstance(value, ModuleType)
        and str(getattr(value, "__module__", "")).startswith("conveyor")
    }
    assert public - set(module.__all__) == set()


def test_the_front_door_binds_nothing_else_public() -> None:
    module = load("conveyor")
    public = {
        member
        for member, value in vars(module).items()
        if not member.startswith("_") and not isinstance(value, ModuleType)
    }
    assert public == set(module.__all__)
    assert set(FRONT_DOOR) <= set(dir(conveyor))


def test_every_error_of_the_tree_is_at_the_front_door() -> None:
    errors = {
        name
        for name, value in vars(conveyor.errors).items()
        if isinstance(value, type) and issubclass(value, conveyor.errors.ConveyorError)
    }
    assert errors == set(conveyor.errors.__all__)
    assert errors <= set(conveyor.__all__)
    for name in errors:
        assert getattr(conveyor, name) is getattr(conveyor.errors, name)


def test_the_front_doors_homes_and_its_imports_for_type_checkers_agree() -> None:
    """`__getattr__` finds a name in `_HOMES`; mypy reads the `if TYPE_CHECKING:` imports."""
    tree = ast.parse(Path(conveyor.__file__).read_text())
    imported: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            if ast.unparse(node.test).startswith("not"):
                continue
            for statement in node.body:
                assert isinstance(statement, ast.ImportFrom) and statement.module
                for alias in statement.names:
                    assert alias.asname is None
                    imported[alias.name] = statement.module
    assert imported == conveyor._HOMES
    assert sorted(imported) == sorted(conveyor.__all__)
    for name, home in conveyor._HOMES.items():
        assert getattr(conveyor, name) is getattr(importlib.import_module(home), name)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Clinet'"):
        conveyor.Clinet  # type: ignore[attr-defined]  # noqa: B018
    with pytest.raises(ImportError):
        from conveyor import Clinet  # type: ignore[attr-defined]  # noqa: F401


def test_import_conveyor_stays_cheap() -> None:
    """Every Conveyor process imports the package first: it loads no client, engine or web
    framework until a name that needs them is used."""
    code = (
        "import sys, conveyor\n"
        "heavy = {'httpx', 'pydantic', 'fastapi', 'conveyor.client', 'conveyor.engine'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
        "conveyor.ConveyorError\n"
        "print(sorted(heavy & set(sys.modules)))\n"
        "from conveyor import Client\n"
        "print('conveyor.client' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.split("\n")[:3] == ["[]", "[]", "True"]


def test_py_typed_marks_the_package_as_typed() -> None:
    assert (Path(conveyor.__file__).parent / "py.typed").is_file()


def test_the_wheel_ships_py_typed(tmp_path: Path) -> None:
    """Built as any frontend builds it (the PEP 517 hook of the build backend), offline."""
    root = Path(__file__).resolve().parents[2]
    built = subprocess.run(
        [sys.executable, "-c", "import sys, hatchling.build as b; print(b.build_wheel(sys.argv[1]))",
         str(tmp_path)],
        cwd=root, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    with zipfile.ZipFile(tmp_path / built.stdout.strip().splitlines()[-1]) as wheel:
        names = set(wheel.namelist())
    assert {"conveyor/py.typed", "conveyor/__init__.py", "conveyor/errors.py"} <= names
