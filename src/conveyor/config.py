"""The configuration file: `conveyor.toml`, one table per command.

```toml
verbose = 1                 # the group's own option (-v)

[server]
port = 8001
db = "postgresql://conveyor@db/conveyor"

[worker]
concurrency = 4
queues = ["default", "images"]      # a list, or the flag's text: "default,images"
resources = {gpu = 1}               # a table, or the flag's text: "gpu=1"
allow-module = ["myapp"]

[schedule.add]              # a subcommand's table sits inside its group's
tz = "Europe/Paris"
```

Keys are the long flag names (`allow-module`, or `allow_module`). Which file: `--config PATH` or
`CONVEYOR_CONFIG`, else `conveyor.toml` in the working directory, else none. Every value can also
come from the command line or the environment; the precedence, the same for every option, is

    flag > environment variable > config file > default

This module only finds, reads and shapes the file; `conveyor.cli.config` turns it into click's
`default_map` and names the environment variables, once, for every command.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conveyor.errors import ConveyorError

FILE_NAME = "conveyor.toml"
ENV_CONFIG = "CONVEYOR_CONFIG"


class ConfigFileError(ConveyorError, ValueError):
    """The configuration file is missing, is not TOML, or names an unknown command or option."""


@dataclass(frozen=True, slots=True)
class ConfigFile:
    """A parsed configuration file; `path` is None when there is none (every table is empty)."""

    path: Path | None = None
    data: Mapping[str, Any] = field(default_factory=dict)

    def table(self, *command_path: str) -> Mapping[str, Any]:
        """The table of a command (`table("schedule", "add")`), empty when the file has none."""
        found: Any = self.data
        for name in command_path:
            found = found.get(name, {}) if isinstance(found, Mapping) else {}
        return found if isinstance(found, Mapping) else {}

    @property
    def label(self) -> str:
        """How messages name the file."""
        return str(self.path) if self.path else "(no config file)"


def find_config_file(explicit: str | None, cwd: Path) -> Path | None:
    """The file to read: the one named (which must exist), else `cwd/conveyor.toml` if present."""
    if explicit:
        path = (cwd / explicit).resolve()
        if not path.is_file():
            raise ConfigFileError(
                f"config file {explicit!r} does not exist (from --config or {ENV_CONFIG})"
            )
        return path
    candidate = cwd / FILE_NAME
    return candidate.resolve() if candidate.is_file() else None


def load_config_file(path: Path | None) -> ConfigFile:
    """Parse the file; an error names the file and, for TOML syntax, the line."""
    if path is None:
        return ConfigFile()
    try:
        with path.open("rb") as stream:
            data = tomllib.load(stream)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigFileError(f"{path}: not valid TOML: {exc}") from exc
    except OSError as exc:
        raise ConfigFileError(f"{path}: cannot be read: {exc.strerror}") from exc
    return ConfigFile(path=path, data=data)
