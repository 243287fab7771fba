"""Job files: a YAML or JSON list of named tasks, submitted as one atomic batch.

```yaml
name: nightly              # optional; prefixes idempotency keys so that a rerun continues
defaults:                  # optional; merged into every task
  timeout_s: 60
tasks:
  - name: fetch
    handler: echo
    args: ["hello"]
  - name: digest
    handler: sha256
    args: [{$result: fetch}]    # the result of task `fetch`; implies depends_on: [fetch]
    run_at: "+30s"              # absolute ISO time, or relative: +30s, +5m, +2h, +1d
```
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from conveyor.core.batch import plan_batch
from conveyor.core.spec import TaskSpec
from conveyor.errors import InvalidSpecError

_RELATIVE = re.compile(r"^\+\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True, slots=True)
class JobFile:
    name: str
    specs: list[TaskSpec]


def load_job_file(path: str | Path, *, now: datetime) -> JobFile:
    """Read and validate a job file; every error names the task and the field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidSpecError(f"cannot read job file {path}: {exc.strerror}") from exc
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise InvalidSpecError(
            f"{path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}"
        ) from exc
    return parse_job_file(data, default_name=path.stem, now=now)


def parse_job_file(data: Any, *, default_name: str, now: datetime) -> JobFile:
    if isinstance(data, list):
        data = {"tasks": data}
    if not isinstance(data, dict):
        raise InvalidSpecError("a job file holds a mapping with a 'tasks' list")
    unknown = set(data) - {"name", "defaults", "tasks"}
    if unknown:
        raise InvalidSpecError(f"unknown top-level key(s): {', '.join(sorted(unknown))}")
    name = str(data.get("name") or default_name)
    defaults = data.get("defaults") or {}
    tasks = data.get("tasks")
    if not isinstance(defaults, dict):
        raise InvalidSpecError("must be a mapping", field="defaults")
    if not isinstance(tasks, list) or not tasks:
        raise InvalidSpecError("must be a non-empty list of tasks", field="tasks")
    specs = [_spec(index, entry, defaults, name, now) for index, entry in enumerate(tasks)]
    _check_references(specs)
    return JobFile(name, specs)


def _spec(
    index: int, entry: Any, defaults: dict[str, Any], file_name: str, now: datetime
) -> TaskSpec:
    label = entry.get("name") if isinstance(entry, dict) else None
    label = str(label) if label else f"#{index + 1}"
    if not isinstance(entry, dict):
        raise InvalidSpecError("each task must be a mapping", task=label)
    fields = {**defaults, **entry}
    if isinstance(fields.get("run_at"), str):
        try:
            fields["run_at"] = parse_start_time(fields["run_at"], now)
        except ValueError as exc:
            raise InvalidSpecError(str(exc), field="run_at", task=label) from None
    if fields.get("name") and "key" not in fields:
        fields["key"] = f"{file_name}:{fields['name']}"
    try:
        return TaskSpec.model_validate(fields)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error["loc"]) or None
        raise InvalidSpecError(error["msg"], field=field, task=label) from None


def parse_start_time(text: str, now: datetime) -> datetime:
    """An ISO time (UTC if it has no zone) or a time relative to `now`: +30s, +5m, +2h, +1d."""
    match = _RELATIVE.match(text.strip())
    if match:
        return now + timedelta(seconds=float(match.group(1)) * _UNIT_S[match.group(2)])
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            "must be an ISO time (2026-11-22T18:00:00Z) or relative (+30s, +5m, +2h, +1d)"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _check_references(specs: list[TaskSpec]) -> None:
    """Refuse cycles and duplicates now, and dependencies on anything but the file's own tasks."""
    names = {spec.name for spec in specs if spec.name}
    plans = plan_batch(specs, [f"#{i}" for i in range(len(specs))])
    for spec, plan in zip(specs, plans, strict=True):
        for dep in plan.depends_on:
            if not dep.startswith("#") and dep not in names:
                raise InvalidSpecError(
                    f"no task named {dep!r} in this file",
                    field="depends_on",
                    task=spec.display_name(),
                )
