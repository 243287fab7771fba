"""Job files: a YAML or JSON list of named tasks, submitted as one atomic batch.

```yaml
name: nightly              # optional; prefixes idempotency keys so that a rerun continues
vars:                      # optional; defaults of the variables, `--var url=...` overrides them
  url: https://example.com
defaults:                  # optional; merged into every task
  timeout_s: 60
limits:                    # optional; set (or replaced) before the tasks are submitted
  api: {rate: 100, per_s: 60}   # at most 100 starts a minute of the tasks that take `api`
tasks:
  - name: fetch
    handler: http
    args: ["${url}"]            # a variable, replaced inside any string value of a task
    limits: [api]               # the limits it takes (`NAME`, or `NAME:KEY`)
  - name: digest
    handler: sha256
    args: [{$result: fetch, $path: body}]  # the body of task `fetch`'s result; implies depends_on
    run_at: "+30s"              # absolute ISO time, or relative: +30s, +5m, +2h, +1d
```

Variables are text: `${name}` is replaced by the value inside any string of `name`, `defaults`
and `tasks` (numbers in `vars` become text). `$${` writes a literal `${`; a `$` not followed by
`{` stays as it is. A reference to a variable that has no value is an error naming the task and
the field.

YAML anchors and aliases (`&common`, `*common`, `<<: *common`) work; a file whose aliases would
add more than a million values once expanded, or an alias inside its own anchor, is refused
before anything is built from it (a 500-byte "billion laughs" file would otherwise expand to
hundreds of millions of values).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from conveyor.core.batch import plan_batch
from conveyor.core.limiting import Limit
from conveyor.core.spec import TaskSpec
from conveyor.errors import InvalidSpecError

_VARIABLE = re.compile(r"\$\$\{|\$\{([^{}]*)\}|\$\{")
"""`$${` (a literal `${`), `${name}`, or a `${` that is never closed."""
VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_RELATIVE = re.compile(r"^\+\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True, slots=True)
class JobFile:
    name: str
    specs: list[TaskSpec]
    limits: list[Limit] = field(default_factory=list)
    """The file's `limits`, to set before its tasks are submitted."""


def load_job_file(
    path: str | Path, *, now: datetime, variables: Mapping[str, str] | None = None
) -> JobFile:
    """Read and validate a job file; every error names the task and the field.

    `variables` (from `--var NAME=VALUE`) override the file's `vars`.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidSpecError(f"cannot read job file {path}: {exc.strerror}") from exc
    kind = "JSON" if path.suffix == ".json" else "YAML"
    try:
        data = json.loads(text) if kind == "JSON" else _load_yaml(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        message = " ".join(str(exc).split())  # one line: PyYAML's spread over several
        raise InvalidSpecError(f"{path} is not valid {kind}: {message}") from exc
    except RecursionError:
        raise InvalidSpecError(f"{path} nests too deeply to be a job file") from None
    try:
        return parse_job_file(data, default_name=path.stem, now=now, variables=variables)
    except RecursionError:
        raise InvalidSpecError(f"{path} nests too deeply to be a job file") from None


MAX_ALIAS_NODES = 1_000_000
"""How many values YAML aliases may add to a job file once expanded. Aliases are shared in the
parsed document, but every step after it (variables, validation, JSON) walks each use again:
nine levels of nine aliases ("billion laughs") make 400 million values out of 500 bytes."""


class _BoundedLoader(yaml.SafeLoader):
    """yaml.safe_load's loader, refusing documents whose aliases expand past MAX_ALIAS_NODES, or
    whose aliases refer to the node that holds them, before anything is built from them."""

    def compose_document(self) -> yaml.Node | None:
        node: yaml.Node | None = super().compose_document()
        if node is not None:
            _check_expansion(node)
        return node


def _load_yaml(text: str) -> Any:
    """yaml.safe_load(text), with the bound on aliases."""
    loader = _BoundedLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _check_expansion(root: yaml.Node) -> None:
    """Count the nodes of `root` with every alias expanded, each shared node counted once per
    use but visited once (sizes are memoised), and refuse a count over the bound or a loop."""
    sizes: dict[int, int] = {}
    visiting: set[int] = set()
    distinct = 0
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            visiting.discard(key)
            sizes[key] = 1 + sum(sizes[id(child)] for child in _children(node))
            if sizes[key] - distinct > MAX_ALIAS_NODES:
                raise InvalidSpecError(
                    f"its YAML aliases expand to more than {MAX_ALIAS_NODES:,} values; write the "
                    "repeated values out, or repeat them less"
                )
            continue
        if key in sizes:
            continue
        if key in visiting:
            raise InvalidSpecError(
                f"the YAML value anchored at line {node.start_mark.line + 1} holds an alias to "
                "itself, which would repeat without end"
            )
        visiting.add(key)
        distinct += 1
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in sizes)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def parse_job_file(
    data: Any,
    *,
    default_name: str,
    now: datetime,
    variables: Mapping[str, str] | None = None,
) -> JobFile:
    if isinstance(data, list):
        data = {"tasks": data}
    if not isinstance(data, dict):
        raise InvalidSpecError("a job file holds a mapping with a 'tasks' list")
    unknown = set(data) - {"name", "vars", "defaults", "limits", "tasks"}
    if unknown:
        raise InvalidSpecError(f"unknown top-level key(s): {', '.join(sorted(unknown))}")
    values = _Variables(data.get("vars"), variables or {})
    name = str(values.substitute(data.get("name"), None, "name") or default_name)
    defaults = data.get("defaults") or {}
    tasks = data.get("tasks")
    if not isinstance(defaults, dict):
        raise InvalidSpecError("must be a mapping", field="defaults")
    if not isinstance(tasks, list) or not tasks:
        raise InvalidSpecError("must be a non-empty list of tasks", field="tasks")
    defaults = values.substitute(defaults, None, "defaults")
    specs = [_spec(index, entry, defaults, name, now, values) for index, entry in enumerate(tasks)]
    limits = _limits(values.substitute(data.get("limits"), None, "limits"))
    values.check_overrides_used()
    _check_references(specs)
    return JobFile(name, specs, limits)


def _limits(declared: Any) -> list[Limit]:
    """`limits: {NAME: {concurrency: N, rate: R, per_s: S}}`, each checked as the server would."""
    if declared is None:
        return []
    if not isinstance(declared, dict):
        raise InvalidSpecError("must be a mapping of limit names to settings", field="limits")
    limits = []
    for name, settings in declared.items():
        if not isinstance(settings, dict):
            raise InvalidSpecError(
                "must be a mapping such as {concurrency: 5} or {rate: 100, per_s: 60}",
                field=f"limits.{name}",
            )
        settings = {key: _number(value) for key, value in settings.items()}
        try:
            limits.append(Limit.model_validate({**settings, "name": name}))
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(part) for part in error["loc"] if part != "name")
            path = f"limits.{name}.{where}" if where else f"limits.{name}"
            raise InvalidSpecError(error["msg"], field=path) from None
    return limits


class _Variables:
    """The file's `vars` with the command line's overrides, and `${name}` substitution."""

    def __init__(self, declared: Any, overrides: Mapping[str, str]) -> None:
        if declared is None:
            declared = {}
        if not isinstance(declared, dict):
            raise InvalidSpecError("must be a mapping of names to values", field="vars")
        self.values: dict[str, str] = {}
        for key, value in declared.items():
            if not isinstance(key, str) or not VARIABLE_NAME.fullmatch(key):
                raise InvalidSpecError(
                    f"{key!r} is not a variable name (letters, digits and _)", field="vars"
                )
            if isinstance(value, str):
                self.values[key] = value
            elif isinstance(value, bool | int | float):
                self.values[key] = json.dumps(value)
            else:
                raise InvalidSpecError("must be text or a number", field=f"vars.{key}")
        for key in overrides:
            if not VARIABLE_NAME.fullmatch(key):
                raise InvalidSpecError(
                    f"--var {key}: not a variable name (letters, digits and _)", field="vars"
                )
        self.declared = set(self.values)
        self.overrides = dict(overrides)
        self.values.update(overrides)
        self.used: set[str] = set()

    def substitute(self, value: Any, task: str | None, field: str) -> Any:
        """`value` with every `${name}` in its strings replaced; errors name task and field."""
        if isinstance(value, str):
            return _VARIABLE.sub(lambda match: self._value(match, task, field), value)
        if isinstance(value, list):
            return [self.substitute(v, task, f"{field}.{i}") for i, v in enumerate(value)]
        if isinstance(value, dict):
            return {k: self.substitute(v, task, f"{field}.{k}") for k, v in value.items()}
        return value

    def _value(self, match: re.Match[str], task: str | None, field: str) -> str:
        text = match.group(0)
        if text == "$${":
            return "${"
        name = match.group(1)
        if name is None or not VARIABLE_NAME.fullmatch(name):
            raise InvalidSpecError(
                f"malformed variable {text!r}: write ${{name}}, or $${{ for a literal ${{",
                field=field,
                task=task,
            )
        if name not in self.values:
            raise InvalidSpecError(
                f"unknown variable {name!r}: define it under vars, or pass --var {name}=VALUE",
                field=field,
                task=task,
            )
        self.used.add(name)
        return self.values[name]

    def check_overrides_used(self) -> None:
        """A --var the file neither declares nor uses is most likely a typo: say so."""
        for name in self.overrides:
            if name not in self.declared and name not in self.used:
                raise InvalidSpecError(
                    f"--var {name}: this job file has no variable {name!r}", field="vars"
                )


def _spec(
    index: int,
    entry: Any,
    defaults: dict[str, Any],
    file_name: str,
    now: datetime,
    values: _Variables,
) -> TaskSpec:
    label = entry.get("name") if isinstance(entry, dict) else None
    label = str(label) if label else f"#{index + 1}"
    if not isinstance(entry, dict):
        raise InvalidSpecError("each task must be a mapping", task=label)
    entry = {key: values.substitute(value, label, str(key)) for key, value in entry.items()}
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


def _number(value: Any) -> Any:
    """A variable's text that spells a number (`concurrency: ${slots}`), as that number."""
    if isinstance(value, str):
        try:
            number = json.loads(value)
        except ValueError:
            return value
        if isinstance(number, int | float) and not isinstance(number, bool):
            return number
    return value
