"""The fault matrix, longer and bigger than the test suite's run, with the figures printed.

    .venv/bin/python scripts/chaos.py              # 20,000 tasks under every fault, SQLite
    .venv/bin/python scripts/chaos.py --db 'postgresql://postgres@127.0.0.1:5432/test?schema=conveyor_chaos'
    .venv/bin/python scripts/chaos.py --faults worker_kills,server_kills   # the kills alone

A workload of chains (submitted in batches) and single tasks (one submit call each, from
several threads), with steps that fail once, always fail, time out or are poison, runs while
the faults strike: workers and the server SIGKILLed, PostgreSQL connections terminated, the
links between the database, the server, the workers and the clients reset, partitioned and
delayed by TCP proxies, a worker partitioned until it is declared dead, busy workers
deregistered, the disk under SQLite filled (tests/helpers/chaos.py has the table). Then the
ledgers are checked (conveyor.ledger). Exits 1 if the checker finds any violation or a task
ends in a way its plan does not imply. With PostgreSQL, give a `?schema=` of its own: the
script drops that schema first and after. Run as root for the disk-full fault (it mounts a
tmpfs); without, that fault is skipped, saying why.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from urllib.parse import parse_qs, urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers.chaos import FAULTS, ChaosConfig, ChaosResult, run_chaos  # noqa: E402
from tests.helpers.workload import DEFAULT_POISONS, POISONS  # noqa: E402


def main() -> int:
    d = ChaosConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=16_000, help="Tasks in chains (batches).")
    parser.add_argument("--single-tasks", type=int, default=4_000,
                        help="Tasks submitted one call each.")  # fmt: skip
    parser.add_argument("--submit-threads", type=int, default=12)
    parser.add_argument("--submit-s", type=float, default=600.0,
                        help="Spread the submissions over this long.")  # fmt: skip
    parser.add_argument("--chain-length", type=int, default=d.chain_length)
    parser.add_argument("--batch-tasks", type=int, default=d.batch_tasks)
    parser.add_argument("--poison-share", type=float, default=0.05)
    parser.add_argument("--poisons", default=",".join(DEFAULT_POISONS),
                        help=f"Kinds of poison, of: {', '.join(POISONS)}.")  # fmt: skip
    parser.add_argument("--workers", type=int, default=d.workers)
    parser.add_argument("--concurrency", type=int, default=d.concurrency)
    parser.add_argument("--prefetch", type=int, default=d.prefetch)
    parser.add_argument("--lease-s", type=float, default=d.lease_s)
    parser.add_argument("--faults", default=",".join(FAULTS),
                        help=f"Comma-separated, of: {', '.join(FAULTS)}.")  # fmt: skip
    parser.add_argument("--kill-every-s", type=float, default=d.kill_every_s)
    parser.add_argument("--server-kills", type=int, default=5)
    parser.add_argument("--disk-mb", type=int, default=256)
    parser.add_argument("--fault-s", type=float, default=3600.0,
                        help="Faults go on at most this long after the last submit "
                        "while work remains.")  # fmt: skip
    parser.add_argument("--settle-s", type=float, default=d.settle_s)
    parser.add_argument("--deadline-s", type=float, default=3600.0)
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--db", default=None, help="SQLite path or PostgreSQL URL [a temp file]")
    parser.add_argument("--keep", type=Path, default=None, help="Run in this directory, kept.")
    parser.add_argument("--json", type=Path, default=None, help="Write the figures here too.")
    args = parser.parse_args()
    config = ChaosConfig(
        tasks=args.tasks,
        single_tasks=args.single_tasks,
        submit_threads=args.submit_threads,
        submit_s=args.submit_s,
        chain_length=args.chain_length,
        batch_tasks=args.batch_tasks,
        shares=replace(d.shares, poison=args.poison_share),
        poisons=tuple(p for p in args.poisons.split(",") if p),
        workers=args.workers,
        concurrency=args.concurrency,
        prefetch=args.prefetch,
        lease_s=args.lease_s,
        faults=frozenset(f for f in args.faults.split(",") if f),
        kill_every_s=args.kill_every_s,
        server_kills=args.server_kills,
        disk_mb=args.disk_mb,
        fault_s=args.fault_s,
        settle_s=args.settle_s,
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
    for bug, count in sorted(result.known_bugs.items()):
        print(
            f"  {count} finding(s) explained by the known bug {bug} (tests/helpers/known_bugs.py)"
        )
    for line in result.not_as_designed[:10]:
        print(f"  not as designed: {line}")
    for line in result.injector_errors[:10]:
        print(f"  fault injector failed: {line}")
    print("MATRIX OK" if result.ok else "MATRIX FAILED")
    return 0 if result.ok else 1


def _run(directory: Path, config: ChaosConfig) -> ChaosResult:
    started = time.monotonic()

    def say(line: str) -> None:
        print(f"[{time.monotonic() - started:7.1f}s] {line}", flush=True)

    say(f"seed {config.seed}, {config.workers} workers of {config.concurrency} slots, "
        f"lease {config.lease_s:g}s, in {directory}")  # fmt: skip
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
