"""Schema versions, applied in order and recorded in ``schema_migrations``.

Each version has the same tables in both dialects: PostgreSQL keeps money and quantities
in ``NUMERIC`` (exact, unbounded scale), times in ``timestamptz`` and documents in
``jsonb``; SQLite keeps money as decimal text (read back as exact Decimals) and times as
ISO 8601 UTC text.

Postings carry no foreign key to their transaction: the store writes both in one
database transaction, and a per-row key check would make every batch slower as a
ledger grows (PostgreSQL plans it once, while the table is still empty).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    postgres: str
    sqlite: str


_V1_TABLES = """
CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    mode TEXT NOT NULL,
    status TEXT NOT NULL,
    started_at {time} NOT NULL,
    finished_at {time},
    config {json} NOT NULL
);
CREATE TABLE ledger_transactions (
    run_id TEXT NOT NULL REFERENCES runs(id),
    ledger TEXT NOT NULL,
    seq INTEGER NOT NULL,
    type TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    at {time} NOT NULL,
    memo TEXT NOT NULL,
    currency TEXT NOT NULL,
    PRIMARY KEY (run_id, ledger, seq),
    UNIQUE (run_id, ledger, idempotency_key)
);
CREATE TABLE ledger_postings (
    run_id TEXT NOT NULL,
    ledger TEXT NOT NULL,
    seq INTEGER NOT NULL,
    leg INTEGER NOT NULL,
    account TEXT NOT NULL,
    amount {money} NOT NULL,
    quantity {money} NOT NULL,
    PRIMARY KEY (run_id, ledger, seq, leg)
);
"""

# Version 2: what a paper session persists. Column types are written once, as in
# _V2_COLUMNS below, and spelled per dialect by _ddl(). A migration never changes: later
# versions' columns are added to COLUMNS (the tables as they are now) after it.

_V2_COLUMNS: dict[str, list[tuple[str, str]]] = {
    # The runtime's journal: each node's latest state and the reply to its latest call.
    "node_states": [
        ("run_id", "text"), ("source", "text"), ("version", "int"), ("state", "text"),
        ("reply", "bytes?"), ("updated_at", "time"),
    ],
    "events": [
        ("run_id", "text"), ("seq", "bigint"), ("id", "text"), ("source", "text"), ("type", "text"),
        ("entity", "text"), ("at", "time"), ("data", "json"),
    ],
    "orders": [
        ("run_id", "text"), ("id", "text"), ("agent", "text"), ("symbol", "text"), ("side", "text"),
        ("signal_at", "time"),
    ],
    "fills": [
        ("run_id", "text"), ("id", "text"), ("agent", "text"), ("n", "int"), ("symbol", "text"),
        ("side", "text"), ("qty", "money"), ("price", "money"), ("fee", "money"), ("notional", "money?"),
        ("reason", "text"), ("at", "time"), ("order_id", "text?"), ("bar_ns", "bigint"),
        # The fill model's own figures (floats, stored exactly), from which trades are rebuilt.
        ("units", "money"), ("unit_price", "money"), ("exec_notional", "money"), ("exec_fee", "money"),
        ("cash_after", "money"),
    ],
    "equity_snapshots": [
        ("run_id", "text"), ("entity", "text"), ("bars", "int"), ("at", "time"), ("equity", "money"),
        ("cash", "money"), ("realized_pnl", "money"), ("unrealized_pnl", "money"), ("fees", "money"),
        ("trades", "int"), ("max_drawdown", "float?"), ("sharpe", "float?"),
    ],
    "halts": [
        ("run_id", "text"), ("id", "text"), ("entity", "text"), ("at", "time"), ("reason", "text"),
        ("resumed", "bool"),
    ],
    "fund_allocations": [
        ("run_id", "text"), ("key", "text"), ("source", "text"), ("target", "text"), ("amount", "money"),
        ("kind", "text"), ("at", "time"),
    ],
    # The seed's registry of a run's wallets, farms, agents and goals.
    "master_wallets": [
        ("run_id", "text"), ("name", "text"), ("currency", "text"), ("initial_deposit", "money"),
        ("cash", "money"),
    ],
    "farms": [
        ("run_id", "text"), ("name", "text"), ("farm_type", "text"), ("agents_mode", "text"),
        ("allocation", "json"), ("status", "text"), ("halted_reason", "text?"),
    ],
    "agent_configs": [
        ("run_id", "text"), ("name", "text"), ("farm", "text"), ("strategy", "text"), ("params", "json"),
        ("symbol", "text"), ("wallet", "text"), ("allocated_funds", "money"), ("assigned_goals", "json"),
        ("status", "text"),
    ],
    "goals": [
        ("run_id", "text"), ("name", "text"), ("goal_type", "text"), ("target", "json"), ("on_complete", "text"),
        ("deadline", "json?"), ("status", "text"), ("progress", "money"), ("collected", "money"),
        ("completed_at", "time?"), ("completing_trade", "text?"),
    ],
    "agent_farm_assignments": [("run_id", "text"), ("agent", "text"), ("farm", "text")],
    "farm_goal_assignments": [
        ("run_id", "text"), ("goal", "text"), ("farm", "text?"), ("agent", "text?"), ("weight", "money"),
    ],
    # The backtester's results.
    "backtest_results": [
        ("id", "text"), ("created_at", "time"), ("strategy", "text"), ("params", "json"), ("data", "text"),
        ("costs", "json"), ("metrics", "json"), ("trades", "int"),
    ],
    "sweep_results": [
        ("id", "text"), ("created_at", "time"), ("strategy", "text"), ("data", "text"), ("grid", "json"),
        ("metric", "text"), ("combinations", "int"), ("best", "json"), ("results", "json"),
    ],
}

COLUMNS: dict[str, list[tuple[str, str]]] = {table: list(columns) for table, columns in _V2_COLUMNS.items()}
"""Every session table's columns now (version 2's and those later versions added)."""
# Version 3: ``reply`` held a binary payload (emptied by the migration, never read);
# ``reply_json`` holds the reply as JSON.
COLUMNS["node_states"].append(("reply_json", "text?"))
COLUMNS["orders"].append(("status", "text?"))
# Version 4: commands an operator gave a running session, journaled before they are applied.
COLUMNS["operator_commands"] = [
    ("run_id", "text"), ("n", "int"), ("kind", "text"), ("args", "json"), ("by", "text"), ("at", "time"),
    ("bars", "bigint"), ("status", "text"), ("result", "json?"),
]

# Version 5: the accounts of `cival serve` (passwords and API keys only as argon2 hashes).
COLUMNS["users"] = [
    ("name", "text"), ("role", "text"), ("password_hash", "text"), ("created_at", "time"), ("created_by", "text"),
]
COLUMNS["api_keys"] = [
    ("id", "text"), ("user_name", "text"), ("key_hash", "text"), ("label", "text"), ("created_at", "time"),
    ("revoked_at", "time?"),
]

KEYS: dict[str, tuple[str, ...]] = {
    "node_states": ("run_id", "source"),
    "events": ("run_id", "seq"),
    "orders": ("run_id", "id"),
    "fills": ("run_id", "id"),
    "equity_snapshots": ("run_id", "entity", "bars"),
    "halts": ("run_id", "id"),
    "fund_allocations": ("run_id", "key"),
    "master_wallets": ("run_id", "name"),
    "farms": ("run_id", "name"),
    "agent_configs": ("run_id", "name"),
    "goals": ("run_id", "name"),
    "agent_farm_assignments": ("run_id", "agent"),
    "farm_goal_assignments": ("run_id", "goal", "farm", "agent"),
    "operator_commands": ("run_id", "n"),
    "backtest_results": ("id",),
    "sweep_results": ("id",),
    "users": ("name",),
    "api_keys": ("id",),
}

_TYPES = {
    "postgres": {"text": "TEXT", "int": "INTEGER", "bigint": "BIGINT", "money": "NUMERIC", "time": "TIMESTAMPTZ",
                 "json": "JSONB", "bytes": "BYTEA", "float": "DOUBLE PRECISION", "bool": "BOOLEAN"},
    "sqlite": {"text": "TEXT", "int": "INTEGER", "bigint": "INTEGER", "money": "TEXT", "time": "TEXT",
               "json": "TEXT", "bytes": "BLOB", "float": "REAL", "bool": "INTEGER"},
}


def column_kind(spec: str) -> tuple[str, bool]:
    """("money?") -> ("money", True): the column's kind and whether it may be NULL."""
    return spec.rstrip("?"), spec.endswith("?")


def _ddl(dialect: str) -> str:
    types = _TYPES[dialect]
    out = []
    for table, columns in _V2_COLUMNS.items():
        cols = []
        for name, spec in columns:
            kind, nullable = column_kind(spec)
            # A key column may be NULL in farm_goal_assignments (a farm or an agent): '' instead.
            cols.append(f"{name} {types[kind]}{'' if nullable else ' NOT NULL'}")
        key = KEYS[table]
        if table == "farm_goal_assignments":
            out.append(f"CREATE TABLE {table} ({', '.join(cols)})")
            out.append(f"CREATE INDEX {table}_run ON {table} (run_id, goal)")
            continue
        out.append(f"CREATE TABLE {table} ({', '.join(cols)}, PRIMARY KEY ({', '.join(key)}))")
    out += [
        "CREATE UNIQUE INDEX events_id ON events (run_id, id)",
        "CREATE INDEX events_type ON events (run_id, type, seq)",
        "CREATE UNIQUE INDEX fills_n ON fills (run_id, agent, n)",
        "CREATE INDEX equity_entity ON equity_snapshots (run_id, entity)",
        # The seed's wallet_transactions: every movement of a wallet's cash.
        "CREATE VIEW wallet_transactions AS SELECT t.run_id, t.ledger, t.seq, t.type, t.idempotency_key, t.at, "
        "t.memo, t.currency, p.account, p.amount FROM ledger_transactions t JOIN ledger_postings p "
        "ON p.run_id = t.run_id AND p.ledger = t.ledger AND p.seq = t.seq WHERE p.account LIKE '%/cash'",
    ]
    runs = {
        "postgres": [
            "ALTER TABLE runs ADD COLUMN event_seq BIGINT NOT NULL DEFAULT 0",
            "ALTER TABLE runs ADD COLUMN meta JSONB NOT NULL DEFAULT '{}'::jsonb",
        ],
        "sqlite": [
            "ALTER TABLE runs ADD COLUMN event_seq INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE runs ADD COLUMN meta TEXT NOT NULL DEFAULT '{}'",
        ],
    }[dialect]
    return ";\n".join(runs + out) + ";\n"


_V3 = """
ALTER TABLE ledger_transactions ADD COLUMN hash TEXT;
UPDATE node_states SET reply = NULL;
ALTER TABLE node_states ADD COLUMN reply_json TEXT;
ALTER TABLE orders ADD COLUMN status TEXT;
DROP INDEX events_type
"""
"""Version 3: chained ledger rows (each row's hash; rows already stored are chained by the
migration itself, see the stores' ``migrate``); journaled replies as JSON (the binary
replies earlier versions kept are erased, never read); each order's status (``open``,
``filled``, ``lapsed``; NULL for orders stored before); and no index of events by type (a
run's events are read in order and filtered as they are read: the index took a twentieth
of a run's store)."""

def _v4(dialect: str) -> str:
    types = _TYPES[dialect]
    cols = []
    for name, spec in COLUMNS["operator_commands"]:
        kind, nullable = column_kind(spec)
        cols.append(f"{name} {types[kind]}{'' if nullable else ' NOT NULL'}")
    return (
        f"ALTER TABLE runs ADD COLUMN driver TEXT;\n"
        f"ALTER TABLE runs ADD COLUMN heartbeat_at {types['time']};\n"
        f"CREATE TABLE operator_commands ({', '.join(cols)}, PRIMARY KEY (run_id, n));\n"
    )


def _v5(dialect: str) -> str:
    types = _TYPES[dialect]
    out = []
    for table in ("users", "api_keys"):
        cols = [f"{name} {types[column_kind(spec)[0]]}{'' if column_kind(spec)[1] else ' NOT NULL'}" for name, spec in COLUMNS[table]]
        out.append(f"CREATE TABLE {table} ({', '.join(cols)}, PRIMARY KEY ({', '.join(KEYS[table])}));\n")
    return "".join(out)


_V4_DOC = """Version 4: who drives a run (``runs.driver``: host, process and a token, with
``heartbeat_at``, renewed while it drives: a lease, so that two processes never drive one
run and a run whose driver died is seen as interrupted), and ``operator_commands``: the
commands given to a running session (allocate, collect, halt, resume, set policy), each
journaled before it is applied, with who gave it, at which bar, and its result."""

MIGRATIONS = [
    Migration(
        1,
        "runs and ledgers",
        _V1_TABLES.format(time="TIMESTAMPTZ", json="JSONB", money="NUMERIC"),
        _V1_TABLES.format(time="TEXT", json="TEXT", money="TEXT"),
    ),
    Migration(2, "sessions: journal, events, orders, fills, equity, registry, results", _ddl("postgres"), _ddl("sqlite")),
    Migration(3, "chained ledger rows, journaled replies as JSON", _V3, _V3),
    Migration(4, "run leases and operator commands", _v4("postgres"), _v4("sqlite")),
    Migration(5, "accounts of the operator API", _v5("postgres"), _v5("sqlite")),
]

CHAINED = 3
"""The version whose migration computes the hashes of ledger rows stored before it."""

__all__ = ["COLUMNS", "KEYS", "MIGRATIONS", "Migration", "column_kind"]
