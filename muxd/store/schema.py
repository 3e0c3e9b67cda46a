"""Journal schema and its forward migrations.

Each migration is a list of statements; ``user_version`` records how many ran. Migrations only
ever move forward and each runs in the transaction that bumps the version.
"""

from __future__ import annotations

import sqlite3

from muxd.store.states import BACKLOG, MessageState, PartState, check, in_states

_MESSAGE_COLUMNS = (
    "id, sim, port, number, sender, text, sms_time, received_at, state, attempts, delivered_at,"
    " last_error, incomplete, seen_mono, sms_time_source"
)
_PART_COLUMNS = (
    "id, fingerprint, sim, port, number, storage, idx, pdu, tpdu_length, received_at, ckey, seq,"
    " total, state, error, message_id, cgen, scts, seen_mono"
)


def _state_count_triggers(table: str) -> tuple[str, ...]:
    """Triggers keeping ``state_counts`` for ``table`` (a row inserted, deleted, or its state
    changed). A REPLACE conflict deletes without firing a delete trigger (recursive triggers
    are off): rows of these tables are never written with INSERT OR REPLACE."""
    bump = (
        "INSERT INTO state_counts(tbl, state, n) VALUES ('{t}', {s}, {d})"
        " ON CONFLICT(tbl, state) DO UPDATE SET n = n + excluded.n;"
    )
    return (
        f"CREATE TRIGGER IF NOT EXISTS {table}_count_insert AFTER INSERT ON {table} BEGIN "
        + bump.format(t=table, s="NEW.state", d=1)
        + " END",
        f"CREATE TRIGGER IF NOT EXISTS {table}_count_delete AFTER DELETE ON {table} BEGIN "
        + bump.format(t=table, s="OLD.state", d=-1)
        + " END",
        f"CREATE TRIGGER IF NOT EXISTS {table}_count_update AFTER UPDATE OF state ON {table}"
        " WHEN OLD.state IS NOT NEW.state BEGIN "
        + bump.format(t=table, s="OLD.state", d=-1)
        + " "
        + bump.format(t=table, s="NEW.state", d=1)
        + " END",
    )


# A migration that rebuilds parts or messages (a new table copied, the old one dropped) drops
# their triggers: it must end with these two, which create them again and count afresh.
STATE_COUNT_TRIGGERS = _state_count_triggers("parts") + _state_count_triggers("messages")
STATE_COUNT_RECOUNT = (
    "DELETE FROM state_counts",
    "INSERT INTO state_counts(tbl, state, n)"
    " SELECT 'parts', state, count(*) FROM parts GROUP BY state",
    "INSERT INTO state_counts(tbl, state, n)"
    " SELECT 'messages', state, count(*) FROM messages GROUP BY state",
)

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        # Raw parts exactly as read from a modem. fingerprint = SIM identity + raw PDU, so a
        # re-read after a crash finds the row and only deletes.
        """CREATE TABLE parts (
            id INTEGER PRIMARY KEY,
            fingerprint TEXT NOT NULL UNIQUE,
            sim TEXT NOT NULL,
            port TEXT NOT NULL,
            number TEXT,
            storage TEXT NOT NULL,
            idx INTEGER NOT NULL,
            pdu TEXT NOT NULL,
            tpdu_length INTEGER,
            received_at REAL NOT NULL,
            ckey TEXT,
            seq INTEGER,
            total INTEGER,
            state TEXT NOT NULL,
            error TEXT,
            message_id INTEGER
        )""",
        "CREATE INDEX parts_ckey ON parts(ckey) WHERE ckey IS NOT NULL",
        # Reassembled messages and their delivery state.
        """CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            sim TEXT NOT NULL,
            port TEXT NOT NULL,
            number TEXT,
            sender TEXT NOT NULL,
            text TEXT NOT NULL,
            sms_time INTEGER NOT NULL,
            received_at REAL NOT NULL,
            state TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            delivered_at REAL,
            last_error TEXT
        )""",
        "CREATE INDEX messages_pending ON messages(state, id)",
        # Numbers published to Onlinesim and the ids it gave them.
        """CREATE TABLE numbers (
            number TEXT PRIMARY KEY,
            onlinesim_id INTEGER,
            port_id TEXT,
            published_at REAL
        )""",
    ),
    (
        # Reassembly generations (a reference reused while its first set is still open) and
        # sets released incomplete after the reassembly timeout.
        "ALTER TABLE parts ADD COLUMN cgen INTEGER",
        "ALTER TABLE messages ADD COLUMN incomplete INTEGER NOT NULL DEFAULT 0",
        "DROP INDEX parts_ckey",
        "CREATE INDEX parts_waiting ON parts(ckey, cgen) WHERE state = 'waiting'",
    ),
    (
        # The entry last published per number (JSON), so incremental publishing can
        # reconcile after a restart and notice changed fields.
        "ALTER TABLE numbers ADD COLUMN entry TEXT",
        # One row rewritten by the health probe after a failed commit (is the disk back?).
        "CREATE TABLE health (id INTEGER PRIMARY KEY, at REAL NOT NULL)",
    ),
    (
        # API v1 (muxd/upstream/v1/operations.py): operations Onlinesim opened on our numbers.
        # activation_id is random and rows are kept, so an id is never handed out twice.
        """CREATE TABLE operations (
            activation_id INTEGER PRIMARY KEY,
            number TEXT NOT NULL,
            service TEXT NOT NULL,
            country TEXT NOT NULL,
            operator TEXT NOT NULL,
            sum REAL,
            rent INTEGER NOT NULL DEFAULT 0,
            state TEXT NOT NULL,
            status INTEGER,
            created_at REAL NOT NULL,
            expires_at REAL,
            finished_at REAL,
            finish_sum REAL
        )""",
        # One open operation per number, enforced by the database too.
        "CREATE UNIQUE INDEX operations_open ON operations(number) WHERE state = 'open'",
        "CREATE INDEX operations_number ON operations(number, created_at)",
        # (number, service) pairs sold successfully (FINISH_ACTIVATION status 3).
        """CREATE TABLE sold (
            number TEXT NOT NULL,
            service TEXT NOT NULL,
            activation_id INTEGER NOT NULL,
            sold_at REAL NOT NULL,
            PRIMARY KEY (number, service)
        )""",
        # PUSH_SMS deliveries: one row per (message, operation); sms_id is the smsId sent.
        """CREATE TABLE pushes (
            sms_id INTEGER PRIMARY KEY AUTOINCREMENT,
            message_id INTEGER NOT NULL,
            activation_id INTEGER NOT NULL,
            kind TEXT NOT NULL,
            state TEXT NOT NULL,
            result TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            created_at REAL NOT NULL,
            done_at REAL,
            UNIQUE (message_id, activation_id)
        )""",
        "CREATE INDEX pushes_pending ON pushes(state) WHERE state = 'pending'",
    ),
    (
        # The SMSC time stamp of a part (Unix seconds, NULL when its octets are not a time):
        # parts of one message are stamped seconds apart, so reassembly goes by it.
        "ALTER TABLE parts ADD COLUMN scts REAL",
        # Monotonic time (muxd/store/clock.py) a waiting part or an undelivered message was
        # first seen: the reassembly timeout and the hold timeout count from it, so a wall-clock
        # step moves neither. Meaningful under the clock epoch kept in meta.
        "ALTER TABLE parts ADD COLUMN seen_mono REAL",
        "ALTER TABLE messages ADD COLUMN seen_mono REAL",
        # Where sms_time (the date sent upstream) came from: the SMS's own stamp, or the time
        # muxd read it when the stamp was unknown or implausible.
        "ALTER TABLE messages ADD COLUMN sms_time_source TEXT NOT NULL DEFAULT 'stamp'"
        " CHECK (sms_time_source IN ('stamp', 'read'))",
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)",
        # Parts by state (parked ones listed, counts) and by message (pruning with it).
        "CREATE INDEX IF NOT EXISTS parts_state ON parts(state)",
        "CREATE INDEX IF NOT EXISTS parts_message ON parts(message_id)",
    ),
    (
        # API v1 operation lifecycle: only FINISH_ACTIVATION ends an operation upstream, so a
        # local expiry (optional) is recorded apart from the FINISH: expired_at is when muxd
        # freed the number, finished_at when Onlinesim closed the operation (or answered
        # NO_OPERATION for it). Expired rows without a FINISH move their time over.
        "ALTER TABLE operations ADD COLUMN expired_at REAL",
        "UPDATE operations SET expired_at = finished_at, finished_at = NULL"
        " WHERE state = 'expired' AND status IS NULL",
        # Pruning closed operations and settled pushes after the journal's retention.
        "CREATE INDEX pushes_done ON pushes(done_at) WHERE state != 'pending'",
    ),
    (
        # Message and part states are constrained to the known ones (muxd/store/states.py).
        # SQLite adds a CHECK only by rebuilding the table: copy, drop, rename, index again.
        f"""CREATE TABLE messages_checked (
            id INTEGER PRIMARY KEY,
            sim TEXT NOT NULL,
            port TEXT NOT NULL,
            number TEXT,
            sender TEXT NOT NULL,
            text TEXT NOT NULL,
            sms_time INTEGER NOT NULL,
            received_at REAL NOT NULL,
            state TEXT NOT NULL {check("state", MessageState)},
            attempts INTEGER NOT NULL DEFAULT 0,
            delivered_at REAL,
            last_error TEXT,
            incomplete INTEGER NOT NULL DEFAULT 0,
            seen_mono REAL,
            sms_time_source TEXT NOT NULL DEFAULT 'stamp'
                CHECK (sms_time_source IN ('stamp', 'read'))
        )""",
        f"INSERT INTO messages_checked SELECT {_MESSAGE_COLUMNS} FROM messages",
        "DROP TABLE messages",
        "ALTER TABLE messages_checked RENAME TO messages",
        "CREATE INDEX messages_pending ON messages(state, id)",
        f"""CREATE TABLE parts_checked (
            id INTEGER PRIMARY KEY,
            fingerprint TEXT NOT NULL UNIQUE,
            sim TEXT NOT NULL,
            port TEXT NOT NULL,
            number TEXT,
            storage TEXT NOT NULL,
            idx INTEGER NOT NULL,
            pdu TEXT NOT NULL,
            tpdu_length INTEGER,
            received_at REAL NOT NULL,
            ckey TEXT,
            seq INTEGER,
            total INTEGER,
            state TEXT NOT NULL {check("state", PartState)},
            error TEXT,
            message_id INTEGER,
            cgen INTEGER,
            scts REAL,
            seen_mono REAL
        )""",
        f"INSERT INTO parts_checked SELECT {_PART_COLUMNS} FROM parts",
        "DROP TABLE parts",
        "ALTER TABLE parts_checked RENAME TO parts",
        f"CREATE INDEX parts_waiting ON parts(ckey, cgen) WHERE {in_states(PartState.WAITING)}",
        "CREATE INDEX parts_state ON parts(state)",
        "CREATE INDEX parts_message ON parts(message_id)",
    ),
    (
        # Rows of parts and messages per state, kept by triggers in the transaction that
        # changes a row (so exact after a crash, and after edits by another process, which
        # fire the same triggers): the status API reads a few rows instead of counting a
        # million. See STATE_COUNT_TRIGGERS.
        """CREATE TABLE state_counts (
            tbl TEXT NOT NULL,
            state TEXT NOT NULL,
            n INTEGER NOT NULL,
            PRIMARY KEY (tbl, state)
        ) WITHOUT ROWID""",
        *STATE_COUNT_TRIGGERS,
        *STATE_COUNT_RECOUNT,
    ),
)

SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the database to SCHEMA_VERSION; return the version found before."""
    (found,) = conn.execute("PRAGMA user_version").fetchone()
    if found > SCHEMA_VERSION:
        raise sqlite3.DatabaseError(
            f"journal schema version {found} is newer than this muxd ({SCHEMA_VERSION})"
        )
    for version in range(found, SCHEMA_VERSION):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in MIGRATIONS[version]:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version + 1}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    return int(found)


CLOCK_EPOCH = "clock_epoch"


def adopt_clock(conn: sqlite3.Connection, epoch: str | None, now: float) -> None:
    """Make the stored monotonic readings (``seen_mono``) comparable with the opener's clock.

    Under the same clock epoch (same boot) they are kept; otherwise (a reboot, an unknown
    epoch, rows from before the column existed) every running age restarts at ``now``: a
    deadline may come late after a reboot, never early.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (CLOCK_EPOCH,)).fetchone()
        same = epoch is not None and row is not None and row[0] == epoch
        stale = "seen_mono IS NULL" if same else "1"
        waiting = in_states(PartState.WAITING)
        conn.execute(f"UPDATE parts SET seen_mono = ? WHERE {waiting} AND {stale}", (now,))
        conn.execute(
            f"UPDATE messages SET seen_mono = ? WHERE {in_states(*BACKLOG)} AND {stale}", (now,)
        )
        conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (CLOCK_EPOCH, epoch))
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
