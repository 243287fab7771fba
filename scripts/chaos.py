"""Chaos under load, longer and bigger than the test suite's run, with the figures printed.

    .venv/bin/python scripts/chaos.py --tasks 20000 --workers 4 --kill-every-s 2 --server-kills 5
    .venv/bin/python scripts/chaos.py --db postgresql://postgres@127.0.0.1:5432/test?schema=chaos

A workload of chains (with steps that fail once, always fail, or time out) is submitted while a
random worker is SIGKILLed every few seconds and restarted, and the server is SIGKILLed and
restarted on the same port and database; then the ledgers are checked (conveyor.ledger). Exits 1
if the checker finds any violation or a task ends in a state its plan does not imply. With
PostgreSQL, give a `?schema=` of its own: the script drops that schema first and after.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers.chaos import ChaosConfig, run_chaos  # noqa: E402


def main() -> int:
    defaults = ChaosConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--chain-length", type=int, default=defaults.chain_length)
    parser.add_argument("--workers", type=int, default=defaults.workers)
    parser.add_argument("--concurrency", type=int, default=defaults.concurrency)
    parser.add_argument("--prefetch", type=int, default=defaults.prefetch)
    parser.add_argument("--lease-s", type=float, default=defaults.lease_s)
    parser.add_argument("--kill-every-s", type=float, default=defaults.kill_every_s)
    parser.add_argument("--server-kills", type=int, default=5)
    parser.add_argument("--batch-tasks", type=int, default=defaults.batch_tasks)
    parser.add_argument("--submit-every-s", type=float, default=defaults.submit_every_s)
    parser.add_argument("--step-sleep-s", type=float, default=defaults.step_sleep_s)
    parser.add_argument("--long-share", type=float, default=defaults.long_share)
    parser.add_argument("--long-sleep-s", type=float, default=defaults.long_sleep_s)
    parser.add_argument("--deadline-s", type=float, default=1800.0)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--db", default=None, help="SQLite path or PostgreSQL URL [a temp file]")
    parser.add_argument("--keep", type=Path, default=None, help="Run in this directory, kept.")
    parser.add_argument("--json", type=Path, default=None, help="Write the figures here too.")
    args = parser.parse_args()
    config = ChaosConfig(
        tasks=args.tasks,
        chain_length=args.chain_length,
        workers=args.workers,
        concurrency=args.concurrency,
        prefetch=args.prefetch,
        lease_s=args.lease_s,
        kill_every_s=args.kill_every_s,
        server_kills=args.server_kills,
        batch_tasks=args.batch_tasks,
        submit_every_s=args.submit_every_s,
        step_sleep_s=args.step_sleep_s,
        long_share=args.long_share,
        long_sleep_s=args.long_sleep_s,
        deadline_s=args.deadline_s,
        seed=args.seed,
        db=args.db,
    )
    _drop_schema(args.db)
    try:
        if args.keep is not None:
            args.keep.mkdir(parents=True, exist_ok=False)
            result = _run(args.keep, config)
        else:
            with tempfile.TemporaryDirectory(prefix="conveyor-chaos-") as tmp:
                result = _run(Path(tmp), config)
    finally:
        _drop_schema(args.db)
    figures = result.figures()
    print(json.dumps(figures, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    print(result.report.summary())
    for line in result.not_as_designed[:10]:
        print(f"  not as designed: {line}")
    return 0 if result.ok else 1


def _run(directory: Path, config: ChaosConfig):  # type: ignore[no-untyped-def]
    started = time.monotonic()

    def say(line: str) -> None:
        print(f"[{time.monotonic() - started:7.1f}s] {line}", flush=True)

    say(f"{config.tasks} tasks, {config.workers} workers, a worker killed every "
        f"{config.kill_every_s:g}s, {config.server_kills} server kills, in {directory}")  # fmt: skip
    return run_chaos(directory, config, cwd=ROOT, say=say)


def _drop_schema(db: str | None) -> None:
    """A PostgreSQL run starts from, and leaves, an empty schema."""
    if not db or not db.startswith(("postgres://", "postgresql://")):
        return
    parts = urlsplit(db)
    schema = parse_qs(parts.query).get("schema", [None])[0]
    if not schema:
        sys.exit("give the PostgreSQL URL a ?schema=NAME of its own: the script drops it")
    import psycopg

    base = urlunsplit(parts._replace(query=""))
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


if __name__ == "__main__":
    sys.exit(main())
