"""SQLite schema, as numbered migrations applied in order and recorded in schema_migrations."""

from __future__ import annotations

MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE TABLE tasks (
            seq INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            name TEXT,
            handler TEXT NOT NULL,
            args TEXT NOT NULL,
            kwargs TEXT NOT NULL,
            queue TEXT NOT NULL,
            priority INTEGER NOT NULL,
            state TEXT NOT NULL,
            reason TEXT,
            depends_on TEXT NOT NULL,
            deps_left INTEGER NOT NULL,
            not_before REAL,
            timeout_s REAL,
            max_retries INTEGER NOT NULL,
            retries_used INTEGER NOT NULL,
            retry TEXT,
            attempts INTEGER NOT NULL,
            deliveries INTEGER NOT NULL,
            resources TEXT NOT NULL,
            key TEXT UNIQUE,
            labels TEXT NOT NULL,
            result TEXT,
            error TEXT,
            worker_id TEXT,
            lease_expires_at REAL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            started_at REAL,
            finished_at REAL,
            has_refs INTEGER NOT NULL
        ) STRICT;
        -- Partial indexes cover only live states, so finished tasks never slow the hot paths.
        CREATE INDEX tasks_ready ON tasks (queue, priority DESC, seq) WHERE state = 'queued';
        CREATE INDEX tasks_due ON tasks (not_before) WHERE state = 'pending' AND deps_left = 0;
        CREATE INDEX tasks_lease_expiry ON tasks (lease_expires_at) WHERE state = 'running';
        CREATE INDEX tasks_by_worker ON tasks (worker_id) WHERE state = 'running';
        CREATE INDEX tasks_by_state ON tasks (state, seq);
        CREATE INDEX tasks_by_name ON tasks (name, seq) WHERE name IS NOT NULL;

        CREATE TABLE dependencies (
            depends_on TEXT NOT NULL,
            task_id TEXT NOT NULL,
            PRIMARY KEY (depends_on, task_id)
        ) STRICT, WITHOUT ROWID;

        CREATE TABLE attempts (
            task_id TEXT NOT NULL,
            number INTEGER NOT NULL,
            worker_id TEXT,
            started_at REAL NOT NULL,
            lease_expires_at REAL,
            finished_at REAL,
            outcome TEXT,
            error TEXT,
            traceback TEXT,
            stdout_tail TEXT NOT NULL DEFAULT '',
            stderr_tail TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (task_id, number)
        ) STRICT, WITHOUT ROWID;

        CREATE TABLE workers (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            host TEXT NOT NULL,
            pid INTEGER NOT NULL,
            concurrency INTEGER NOT NULL,
            queues TEXT NOT NULL,
            resources TEXT NOT NULL,
            state TEXT NOT NULL,
            registered_at REAL NOT NULL,
            last_seen_at REAL NOT NULL,
            metrics TEXT NOT NULL
        ) STRICT, WITHOUT ROWID;
        CREATE INDEX workers_live ON workers (last_seen_at) WHERE state IN ('alive', 'draining');

        -- Counts by state and queue, kept by triggers so that status costs the same at any size.
        CREATE TABLE task_counts (
            state TEXT NOT NULL,
            queue TEXT NOT NULL,
            n INTEGER NOT NULL,
            PRIMARY KEY (state, queue)
        ) STRICT, WITHOUT ROWID;
        CREATE TRIGGER task_counts_insert AFTER INSERT ON tasks BEGIN
            INSERT INTO task_counts (state, queue, n) VALUES (NEW.state, NEW.queue, 1)
            ON CONFLICT (state, queue) DO UPDATE SET n = n + 1;
        END;
        CREATE TRIGGER task_counts_update AFTER UPDATE OF state ON tasks
        WHEN OLD.state IS NOT NEW.state BEGIN
            UPDATE task_counts SET n = n - 1 WHERE state = OLD.state AND queue = OLD.queue;
            INSERT INTO task_counts (state, queue, n) VALUES (NEW.state, NEW.queue, 1)
            ON CONFLICT (state, queue) DO UPDATE SET n = n + 1;
        END;
        CREATE TRIGGER task_counts_delete AFTER DELETE ON tasks BEGIN
            UPDATE task_counts SET n = n - 1 WHERE state = OLD.state AND queue = OLD.queue;
        END;
        """,
    ),
    (
        2,
        """
        -- Retention deletes finished tasks oldest first.
        CREATE INDEX tasks_finished ON tasks (finished_at) WHERE finished_at IS NOT NULL;
        """,
    ),
    (
        3,
        """
        CREATE TABLE schedules (
            name TEXT PRIMARY KEY,
            spec TEXT NOT NULL,
            next_run_at REAL NOT NULL,
            created_at REAL NOT NULL,
            last_run_at REAL,
            fired INTEGER NOT NULL DEFAULT 0
        ) STRICT, WITHOUT ROWID;
        CREATE INDEX schedules_due ON schedules (next_run_at);
        """,
    ),
    (
        4,
        """
        -- When any server last ran the timers: a longer gap is an outage (Engine.bridge_outage).
        CREATE TABLE timer_runs (
            name TEXT PRIMARY KEY,
            ran_at REAL NOT NULL
        ) STRICT, WITHOUT ROWID;
        """,
    ),
    (
        5,
        """
        -- Why a schedule's last firing could not submit its task, and when (Schedule.last_error).
        ALTER TABLE schedules ADD COLUMN last_error TEXT;
        ALTER TABLE schedules ADD COLUMN last_error_at REAL;
        """,
    ),
    (
        6,
        """
        -- Facts the store keeps about itself: closed_cleanly (sqlite_wal.py).
        CREATE TABLE store_state (
            name TEXT PRIMARY KEY,
            value INTEGER NOT NULL
        ) STRICT, WITHOUT ROWID;
        """,
    ),
    (
        7,
        """
        -- Secrets every server of this database uses alike (the worker identity key).
        CREATE TABLE shared_secrets (
            name TEXT PRIMARY KEY,
            value TEXT NOT NULL
        ) STRICT, WITHOUT ROWID;
        """,
    ),
    (
        8,
        """
        -- Queues, schedules and the whole cluster held back by an operator (core/pauses.py);
        -- `name` is empty for scope 'all'. Every lease reads this table in its transaction.
        CREATE TABLE pauses (
            scope TEXT NOT NULL,
            name TEXT NOT NULL,
            paused_at REAL NOT NULL,
            until REAL,
            PRIMARY KEY (scope, name)
        ) STRICT, WITHOUT ROWID;
        -- A worker told to hand back its running tasks and exit (conveyor workers stop).
        ALTER TABLE workers ADD COLUMN hand_back INTEGER NOT NULL DEFAULT 0;
        """,
    ),
    (
        9,
        """
        -- Bulk actions and their progress (conveyor.engine.bulk): each chunk moves `cursor`
        -- and the counts in the transaction that changes its tasks.
        CREATE TABLE bulk_actions (
            id TEXT PRIMARY KEY,
            key TEXT UNIQUE,
            action TEXT NOT NULL,
            filter TEXT NOT NULL,
            chunk_size INTEGER NOT NULL,
            upto_seq INTEGER NOT NULL,
            total INTEGER NOT NULL,
            estimate INTEGER NOT NULL,
            state TEXT NOT NULL,
            cursor INTEGER NOT NULL,
            matched INTEGER NOT NULL,
            changed INTEGER NOT NULL,
            skipped INTEGER NOT NULL,
            chunks INTEGER NOT NULL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            finished_at REAL,
            runner TEXT,
            runner_until REAL,
            error TEXT
        ) STRICT, WITHOUT ROWID;
        CREATE INDEX bulk_actions_running ON bulk_actions (runner_until) WHERE state = 'running';
        """,
    ),
    (
        10,
        """
        -- Placement (conveyor.core.capabilities): worker labels a task requires or prefers,
        -- and what each worker advertised it runs, with its own labels.
        ALTER TABLE tasks ADD COLUMN require_labels TEXT NOT NULL DEFAULT '{}';
        ALTER TABLE tasks ADD COLUMN prefer_labels TEXT NOT NULL DEFAULT '{}';
        ALTER TABLE workers ADD COLUMN capabilities TEXT;
        ALTER TABLE workers ADD COLUMN labels TEXT NOT NULL DEFAULT '{}';
        """,
    ),
    (
        11,
        """
        -- Concurrency and rate limits (conveyor.core.limiting, conveyor.engine.limits).
        CREATE TABLE limits (
            name TEXT PRIMARY KEY,
            concurrency INTEGER,
            rate INTEGER,
            per_s REAL NOT NULL,
            updated_at REAL NOT NULL
        ) STRICT, WITHOUT ROWID;
        -- One row per lease and key it took. A row holds a slot only while its task is running
        -- that attempt (a join with tasks says so), so no ending can leave a slot taken; ending
        -- the attempt removes it (the timers sweep any left).
        CREATE TABLE limit_holds (
            key TEXT NOT NULL,
            task_id TEXT NOT NULL,
            token INTEGER NOT NULL,
            started_at REAL NOT NULL,
            PRIMARY KEY (key, task_id, token)
        ) STRICT, WITHOUT ROWID;
        -- Keys whose held tasks a lease should look at again from `at` on: a slot was freed, a
        -- limit changed, or a rate's window moved on. Rows are only ever added and removed (a
        -- lease removes those it has dealt with), so that no wake waits on another's lock and
        -- none asked while a lease decides is lost.
        CREATE TABLE limit_wakes (
            id INTEGER PRIMARY KEY,
            key TEXT NOT NULL,
            at REAL NOT NULL
        ) STRICT;
        CREATE INDEX limit_wakes_due ON limit_wakes (at);
        CREATE INDEX limit_wakes_by_key ON limit_wakes (key, at);
        ALTER TABLE tasks ADD COLUMN limits TEXT NOT NULL DEFAULT '[]';
        ALTER TABLE tasks ADD COLUMN held_on TEXT;
        -- Tasks held back by a full limit leave the ready index for one of their own, by key,
        -- so that a lease never reads past them.
        DROP INDEX tasks_ready;
        CREATE INDEX tasks_ready ON tasks (queue, priority DESC, seq)
            WHERE state = 'queued' AND held_on IS NULL;
        CREATE INDEX tasks_held ON tasks (held_on, queue, priority DESC, seq)
            WHERE state = 'queued' AND held_on IS NOT NULL;
        """,
    ),
    (
        12,
        """
        -- Ready tasks that take a limit: those of a limit set after they were queued, which
        -- setting it moves to the limit's line (Limiting.set_limit). Few otherwise.
        CREATE INDEX tasks_ready_limited ON tasks (seq)
            WHERE state = 'queued' AND held_on IS NULL AND limits <> '[]';
        -- The starts a rate counts, apart from the holds: a hold goes as its attempt ends, and
        -- a rate's count is a range of this index, with no join.
        CREATE TABLE limit_starts (
            id INTEGER PRIMARY KEY,
            key TEXT NOT NULL,
            started_at REAL NOT NULL
        ) STRICT;
        CREATE INDEX limit_starts_by_key ON limit_starts (key, started_at);
        """,
    ),
]
