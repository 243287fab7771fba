"""Fuzz the REST API with schemathesis, every check, against a real `conveyor server`.

    .venv/bin/python scripts/fuzz.py --max-time 600                # the open API
    .venv/bin/python scripts/fuzz.py --max-time 600 --tokens       # with tokens, as an admin
    .venv/bin/python scripts/fuzz.py --max-time 60 --seed 1 --workers 2

Starts a server on a temporary SQLite file, runs `schemathesis run --checks all` from the
repository root (so `schemathesis.toml` applies: its expectations are explained there), prints
the figures and exits with schemathesis' status: 0 when no check failed. With `--tokens` the
server has client, worker and admin tokens and the fuzzer sends the admin one; its `ignored_auth`
check then also sends requests without it and with a wrong one, which must be 401. Long-polls are
capped at `--max-wait-s` on this server (the schema allows 60 s), so that a run spends its time on
cases rather than on empty waits.

The hooks at the end are loaded by schemathesis itself (`hooks` in schemathesis.toml). They give
the fuzzer the rules about task dependencies that JSON Schema cannot state: a dependency names a
task that exists or a task of the same batch, the dependencies form no cycle, and names and keys
are unique within a batch. Breaking those is refused with 422 and the field named (DESIGN:
validation errors are 422), so a valid-looking spec generated without them would be reported as
"schema-valid request rejected". The hooks drop dependencies from generated specs and make batch
names and keys unique; they only touch values that are valid as generated, so a spec made
invalid on purpose stays invalid. Dependencies are covered by the engine and batch tests.
Likewise a schedule's timezone: the schema gives the shape of a zone name, the same on every
host, and the server refuses a name its timezone database lacks; the hooks put `UTC` in place of
a well-formed unknown name. And the operator's controls: a pause's `until` must lie ahead, a
bulk filter must name a criterion and its time ranges must start before they end, and a drain
or stop must name some workers; the hooks move a past end ahead, name a state, swap a range's
ends, and name a queue. A task's limit key filled in from its arguments (`tenant:{kwargs.t}`)
needs an argument of that name: the hooks drop such limits from generated specs.
"""

import argparse
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


@dataclass
class FuzzResult:
    exit_code: int
    generated: int = 0
    failures: int = 0
    errors: int = 0
    phases: dict[str, str] = field(default_factory=dict)
    seed: str = ""
    command: list[str] = field(default_factory=list)
    output: str = ""
    running_time_s: float = 0.0

    def summary(self) -> str:
        phases = ", ".join(f"{name} {status}" for name, status in self.phases.items())
        return (
            f"{self.generated} cases generated, {self.failures} failures, {self.errors} errors "
            f"in {self.running_time_s:.0f} s (phases: {phases}; seed {self.seed}; "
            f"exit {self.exit_code})"
        )


def fuzz(
    *,
    max_time_s: int,
    tokens: bool = False,
    workers: int = 1,
    seed: int | None = None,
    max_wait_s: float = 1.0,
    work_dir: Path | None = None,
    extra_args: list[str] | None = None,
) -> FuzzResult:
    """Start a server, fuzz it for about `max_time_s`, stop it; the figures from the JSON report."""
    with tempfile.TemporaryDirectory(prefix="conveyor-fuzz-") as tmp:
        directory = work_dir or Path(tmp)
        admin = secrets.token_urlsafe(24)
        env = {
            k: v for k, v in os.environ.items() if k not in ("CONVEYOR_TOKENS", "CONVEYOR_TOKEN")
        }
        if tokens:
            env["CONVEYOR_TOKENS"] = (
                ",".join(f"{role}:{secrets.token_urlsafe(24)}" for role in ("client", "worker"))
                + f",admin:{admin}"
            )
        port = _free_port()
        with (directory / "server.log").open("wb") as log:
            server = subprocess.Popen(
                [sys.executable, "-m", "conveyor", "server", "--db", str(directory / "fuzz.db"),
                 "--port", str(port), "--max-wait-s", str(max_wait_s)],
                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_for(f"{url}/health", server)
            report = directory / "report.json"
            command = [
                str(SCHEMATHESIS), "run", f"{url}/openapi.json", "--checks", "all",
                "--max-time", str(max_time_s), "--workers", str(workers),
                "--request-timeout", "70", "--report", "json", "--report-json-path", str(report),
                "--output-truncate", "true",
            ]  # fmt: skip
            if seed is not None:
                command += ["--seed", str(seed)]
            if tokens:
                command += ["--header", f"Authorization: Bearer {admin}"]
            command += extra_args or []
            started = time.monotonic()
            done = subprocess.run(
                command, cwd=ROOT, env=env, capture_output=True, text=True, check=False
            )
            result = FuzzResult(
                exit_code=done.returncode,
                command=[arg.replace(admin, "ADMIN-TOKEN") for arg in command],
                output=done.stdout + done.stderr,
                running_time_s=time.monotonic() - started,
            )
            if report.exists():
                _read_report(json.loads(report.read_text()), result)
            return result
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def _read_report(data: dict[str, Any], result: FuzzResult) -> None:
    cases = data["test_cases"]
    result.generated = int(cases["generated"])
    result.failures = int(cases["unique_failures"])
    result.errors = len(data["errors"]) + int(cases.get("errored", 0))
    result.seed = str(data.get("seed", ""))
    result.running_time_s = float(data.get("running_time", result.running_time_s))
    result.phases = {name: str(p.get("status")) for name, p in data.get("phases", {}).items()}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for(url: str, server: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with {server.returncode} before answering")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the server did not answer {url} within {timeout_s} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-time", type=int, default=600, help="seconds of fuzzing")
    parser.add_argument("--tokens", action="store_true", help="configure tokens; fuzz as admin")
    parser.add_argument("--workers", type=int, default=1, help="schemathesis workers")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--max-wait-s", type=float, default=1.0, help="the server's long-poll cap")
    parser.add_argument(
        "--keep", type=Path, default=None, help="keep the server log and report here"
    )
    args, extra = parser.parse_known_args()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
    result = fuzz(
        max_time_s=args.max_time,
        tokens=args.tokens,
        workers=args.workers,
        seed=args.seed,
        max_wait_s=args.max_wait_s,
        work_dir=args.keep,
        extra_args=extra,
    )
    print(result.output)
    print(" ".join(result.command))
    print(result.summary())
    return result.exit_code


# ---- hooks, loaded by schemathesis (`hooks` in schemathesis.toml) ------------------------------

NAME = re.compile(r"[A-Za-z0-9_.:\-]{1,200}")
MAX_DEPENDENCIES = 10_000


def _without_nul(value: Any) -> Any:
    """`value` with NUL taken out of every string and key: args and kwargs are any JSON in the
    schema, which cannot say "no NUL at any depth"; the server refuses NUL there (422)."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, list):
        return [_without_nul(item) for item in value]
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    return value


def _without_dependencies(spec: Any) -> None:
    """Drop a valid-looking `depends_on`: nothing generated can name a task that exists; the
    `limits` whose key takes a placeholder (`{kwargs.x}`), which generated arguments cannot be
    expected to fill in; and take NUL out of the arguments (`_without_nul`)."""
    if not isinstance(spec, dict):
        return
    for name in ("args", "kwargs"):
        if name in spec:
            spec[name] = _without_nul(spec[name])
    limits = spec.get("limits")
    if isinstance(limits, list) and all(isinstance(ref, str) for ref in limits):
        spec["limits"] = [ref for ref in limits if "{" not in ref]
    deps = spec.get("depends_on")
    if (
        isinstance(deps, list)
        and len(deps) <= MAX_DEPENDENCIES
        and all(isinstance(d, str) and d for d in deps)
    ):
        spec["depends_on"] = []


def _unique(value: Any, seen: set[str], index: int, pattern: re.Pattern[str] | None) -> Any:
    """`value`, or a valid variant of it not in `seen` (names and keys are unique in a batch)."""
    if not isinstance(value, str) or not 1 <= len(value) <= 200:
        return value
    if pattern is not None and not pattern.fullmatch(value):
        return value
    if value in seen:
        suffix = f".{index}"
        value = value[: 200 - len(suffix)] + suffix
    seen.add(value)
    return value


def map_body(context: Any, body: Any) -> Any:
    operation = context.operation
    path = getattr(operation, "path", "")
    method = str(getattr(operation, "method", "")).upper()
    if method != "POST" or not isinstance(body, dict):
        return body
    if path.endswith("/tasks"):
        _without_dependencies(body)
    elif path.endswith("/tasks/batch") and isinstance(body.get("tasks"), list):
        names: set[str] = set()
        keys: set[str] = set()
        for index, spec in enumerate(body["tasks"]):
            _without_dependencies(spec)
            if isinstance(spec, dict):
                if "name" in spec:
                    spec["name"] = _unique(spec["name"], names, index, NAME)
                if "key" in spec:
                    spec["key"] = _unique(spec["key"], keys, index, None)
    elif path.endswith("/schedules"):
        _without_dependencies(body.get("task"))
        _known_timezone(body)
    elif path.endswith("/tasks/bulk") and isinstance(body.get("filter"), dict):
        _ordered_ranges(body["filter"])
        if all(value is None for value in body["filter"].values()):
            body["filter"]["state"] = ["failed"]  # one criterion at least, or 422
    elif path.endswith(("/workers/drain", "/workers/stop")):
        _some_workers(body)
    return body


def _ordered_ranges(selection: dict[str, Any]) -> None:
    """Swap a time range given end first: each end is valid alone, which is all the schema can
    say; a range that ends before it starts is refused with 422, naming the filter."""
    for low, high in (("created_after", "created_before"), ("finished_after", "finished_before")):
        start, end = _instant(selection.get(low)), _instant(selection.get(high))
        if start is not None and end is not None and start >= end:
            selection[low], selection[high] = selection[high], selection[low]
            if start == end:
                del selection[low]


def _some_workers(selection: dict[str, Any]) -> None:
    """Name a queue when a drain or stop names no worker at all: each of its fields is optional
    in the schema, but one of them must be given (422 otherwise)."""
    if all(selection.get(name) is None for name in ("ids", "queue", "host")):
        selection["queue"] = "default"


def _instant(value: Any) -> datetime | None:
    """A timestamp as the server reads it (naive means UTC), or None when it is not one."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def map_query(context: Any, query: Any) -> Any:
    """A pause's `until` in the future: a past end is valid as a timestamp, which is all the
    schema can say, and refused with 422 (a pause that ended before it began)."""
    if isinstance(query, dict):
        until = _instant(query.get("until"))
        if until is not None and until <= datetime.now(UTC) + timedelta(minutes=1):
            query["until"] = "2999-01-01T00:00:00Z"
    return query


def _known_timezone(schedule: dict[str, Any]) -> None:
    """Put a zone this host knows in place of a valid-looking unknown one: which zones exist is
    up to the server's timezone database, which the schema (the same on every host) cannot
    list; an unknown zone is refused with 422, naming the field."""
    from conveyor.core.schedules import MAX_TIMEZONE_LENGTH, TIMEZONE_PATTERN, known_timezones

    zone = schedule.get("timezone")
    if (
        isinstance(zone, str)
        and len(zone) <= MAX_TIMEZONE_LENGTH
        and re.fullmatch(TIMEZONE_PATTERN, zone)
        and zone not in known_timezones()
    ):
        schedule["timezone"] = "UTC"


def map_case(context: Any, case: Any) -> Any:
    """The same for the coverage phase, which applies case hooks but not body hooks."""
    case.body = map_body(context, case.body)
    case.query = map_query(context, case.query)
    return case


if __name__ == "_schemathesis_hooks":  # loaded by schemathesis from schemathesis.toml
    import schemathesis

    schemathesis.hook(map_body)  # fuzzing and stateful phases
    schemathesis.hook(map_query)
    schemathesis.hook(map_case)  # coverage phase

if __name__ == "__main__":
    sys.exit(main())
