"""Lean storage (issue 15): each long text once, the rest packed.

- texts: the descriptions of occurrences, events and changes, each once, deflated. Rows
  name them by id (occurrences.text_id, events.text_id, changes.before_text and
  after_text), and triggers count the rows that name each (refs): the store forgets a
  text no row names (store/texts.py).
- events: the fields packed without the description and the id (the row's); the VEVENT
  packed with the fields and the description as its dictionary; times in microseconds.
- changes: the summaries packed without their descriptions; the time in microseconds.
- identities: WITHOUT ROWID, its rows in the key's b-tree rather than in a second one.

The counts are kept by triggers: SQLite's own, PL/pgSQL functions on PostgreSQL.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-26
"""

import hashlib
from collections import Counter
from collections.abc import Callable

import sqlalchemy as sa
from alembic import op

from aggregator.store.packing import (
    pack_event,
    pack_json,
    pack_text,
    text_key,
    unpack_event,
    unpack_text,
)
from aggregator.store.schema import Packed, UTCDateTime, UTCMicros

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

#: each column that names a text, by table
_REFERENCES = (
    ("occurrences", "text_id"),
    ("events", "text_id"),
    ("changes", "before_text"),
    ("changes", "after_text"),
)
#: rows read and written at a time: a large database is migrated in bounded memory
_BATCH = 2000


def upgrade() -> None:
    texts = op.create_table(
        "texts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("key", sa.BigInteger, nullable=False),
        sa.Column("refs", sa.Integer, nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_texts_key", "texts", ["key"])
    op.create_index(
        "ix_texts_unused",
        "texts",
        ["id"],
        sqlite_where=sa.text("refs <= 0"),
        postgresql_where=sa.text("refs <= 0"),
    )
    kept = _Texts(texts)
    _occurrences_up(kept)
    _swap(
        "events",
        _events("events", UTCDateTime, sa.JSON),
        _events("events_0010", UTCMicros, Packed, sa.Column("text_id", sa.Integer)),
        lambda row: _event_up(row, kept),
    )
    _swap(
        "changes",
        _changes("changes", UTCDateTime, sa.JSON),
        _changes("changes_0010", UTCMicros, Packed, *_summary_texts()),
        lambda row: _change_up(row, kept),
    )
    kept.count()
    _identities(rowid=False)
    make = _triggers if op.get_bind().dialect.name == "sqlite" else _pg_triggers
    for table, column in _REFERENCES:
        for statement in make(table, column):
            op.execute(statement)


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for table, column in _REFERENCES:
        for name in ("insert", "delete", "update"):
            on = f" ON {table}" if postgresql else ""
            op.execute(f"DROP TRIGGER IF EXISTS texts_{table}_{column}_{name}{on}")
        if postgresql:
            op.execute(f"DROP FUNCTION IF EXISTS texts_{table}_{column}()")
    texts = sa.table("texts", sa.column("id"), sa.column("body"))
    _occurrences_down(texts)
    _swap(
        "events",
        # the fields as packed: they are the VEVENT's dictionary
        _events("events", UTCMicros, sa.LargeBinary, sa.Column("text_id", sa.Integer)),
        _events("events_0009", UTCDateTime, sa.JSON),
        _event_down,
        texts=(texts, ("text_id",)),
    )
    _swap(
        "changes",
        _changes("changes", UTCMicros, Packed, *_summary_texts()),
        _changes("changes_0009", UTCDateTime, sa.JSON),
        _change_down,
        texts=(texts, ("before_text", "after_text")),
    )
    _identities(rowid=True)
    op.drop_table("texts")


class _Texts:
    """The texts as the migration stores them: each once, with the rows that name it."""

    def __init__(self, table: sa.Table) -> None:
        self.table = table
        #: the id of each text stored, by a hash of 128 bits (the texts themselves are not
        #: kept in memory)
        self.ids: dict[bytes, int] = {}
        self.refs: Counter[int] = Counter()
        self.new: list[dict] = []

    def id_of(self, text) -> int | None:
        """The text's id, storing it the first time; none for no text."""
        if not isinstance(text, str) or not text:
            return None
        digest = hashlib.blake2b(text.encode(), digest_size=16).digest()
        found = self.ids.get(digest)
        if found is None:
            # in the order they come, as the store appends them (store/texts.py)
            found = self.ids[digest] = len(self.ids) + 1
            self.new.append(
                {"id": found, "key": text_key(text), "refs": 0, "body": pack_text(text)}
            )
            if len(self.new) >= _BATCH:
                self.write()
        self.refs[found] += 1
        return found

    def write(self) -> None:
        _write(sa.insert(self.table), self.new)
        self.new = []

    def count(self) -> None:
        """Write how many rows name each text (from now on the triggers keep it)."""
        self.write()
        counts = [{"t": found, "n": n} for found, n in self.refs.items()]
        update = sa.update(self.table).where(self.table.c.id == sa.bindparam("t"))
        for start in range(0, len(counts), _BATCH):
            op.get_bind().execute(
                update.values(refs=sa.bindparam("n")), counts[start : start + _BATCH]
            )


def _occurrences_up(kept: _Texts) -> None:
    """Each occurrence's description into texts; the column goes."""
    op.add_column("occurrences", sa.Column("text_id", sa.Integer))
    occurrences = sa.table(
        "occurrences", sa.column("key"), sa.column("description"), sa.column("text_id")
    )
    update = (
        sa.update(occurrences)
        .where(occurrences.c.key == sa.bindparam("k"))
        .values(text_id=sa.bindparam("t"))
    )

    def name_texts(rows) -> None:
        named = [{"k": row.key, "t": kept.id_of(row.description)} for row in rows]
        _write(update, [row for row in named if row["t"] is not None])

    _in_batches(
        sa.select(occurrences.c.key, occurrences.c.description), occurrences.c.key, name_texts
    )
    with op.batch_alter_table("occurrences") as batch:
        batch.drop_column("description")


def _occurrences_down(texts: sa.Table) -> None:
    """Each occurrence's description back from texts into its column."""
    with op.batch_alter_table("occurrences") as batch:
        batch.add_column(sa.Column("description", sa.Text, nullable=False, server_default=""))
    occurrences = sa.table(
        "occurrences", sa.column("key"), sa.column("description"), sa.column("text_id")
    )
    query = sa.select(occurrences.c.key, texts.c.body).join(
        texts, texts.c.id == occurrences.c.text_id
    )
    update = (
        sa.update(occurrences)
        .where(occurrences.c.key == sa.bindparam("k"))
        .values(description=sa.bindparam("d"))
    )

    def write(rows) -> None:
        _write(update, [{"k": r.key, "d": unpack_text(r.body)} for r in rows])

    _in_batches(query, occurrences.c.key, write)
    with op.batch_alter_table("occurrences") as batch:
        batch.drop_column("text_id")
        batch.alter_column("description", server_default=None)


def _write(statement, rows: list[dict]) -> None:
    """One statement for all the rows (none: nothing to do)."""
    if rows:
        op.get_bind().execute(statement, rows)


def _in_batches(query, order: sa.ColumnElement, use: Callable[[list], None]) -> None:
    """`use` every row of `query`, _BATCH at a time in the order of a unique column."""
    last = None
    while True:
        batch = query.order_by(order).limit(_BATCH)
        if last is not None:
            batch = batch.where(order > last)
        rows = op.get_bind().execute(batch).all()
        if not rows:
            return
        use(rows)
        last = rows[-1]._mapping[order.key]


def _swap(
    name: str,
    old: sa.Table,
    new: sa.Table,
    convert: Callable[[sa.Row], dict],
    texts: tuple[sa.Table, tuple[str, ...]] | None = None,
) -> None:
    """Table `name` made anew as `new` (created under its own name), each row as `convert`
    makes it of the `old` row and the bodies of the texts it names (`body_<column>`)."""
    new.create(op.get_bind())
    query = sa.select(old)
    if texts is not None:
        table, columns = texts
        for column in columns:
            alias = table.alias(f"t_{column}")
            query = query.add_columns(alias.c.body.label(f"body_{column}")).outerjoin(
                alias, alias.c.id == old.c[column]
            )

    def copy(rows) -> None:
        _write(sa.insert(new), [convert(row) for row in rows])

    _in_batches(query, old.c.id, copy)
    op.drop_table(name)
    op.rename_table(new.name, name)
    if name == "changes":
        op.create_index("ix_changes_event_id", name, ["event_id"])
        op.create_index("ix_changes_at", name, ["at"])


def _events(name: str, time, data, *more: sa.Column) -> sa.Table:
    return sa.Table(
        name,
        sa.MetaData(),
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("sequence", sa.Integer, nullable=False),
        sa.Column("created", time, nullable=False),
        sa.Column("last_modified", time, nullable=False),
        sa.Column("start", sa.String(32), nullable=False),
        sa.Column("data", data, nullable=False),
        sa.Column("ics", sa.LargeBinary, nullable=False),
        sa.Column("unpublished_at", time),
        sa.Column("expires_at", time),
        *more,
    )


def _changes(name: str, time, summary, *more: sa.Column) -> sa.Table:
    return sa.Table(
        name,
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("at", time, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("before", summary),
        sa.Column("after", summary, nullable=False),
        *more,
    )


def _summary_texts() -> tuple[sa.Column, sa.Column]:
    return sa.Column("before_text", sa.Integer), sa.Column("after_text", sa.Integer)


def _text_out(values: dict | None) -> tuple[dict | None, str]:
    """As the store writes them: an empty description in place of its text (in texts)."""
    text = (values or {}).get("description")
    if not text or not isinstance(text, str):
        return values, ""
    return {**values, "description": ""}, text


def _event_up(row: sa.Row, kept: _Texts) -> dict:
    fields = {k: v for k, v in row.data.items() if k != "id"}
    fields, text = _text_out(fields)
    data, ics = pack_event(row.id, fields, row.ics, text)
    return {**row._mapping, "data": data, "ics": ics, "text_id": kept.id_of(text)}


def _event_down(row: sa.Row) -> dict:
    text = unpack_text(row.body_text_id)
    fields, ics = unpack_event(row.id, row.data, row.ics, text)
    if text:
        fields["description"] = text
    values = {k: v for k, v in row._mapping.items() if not k.startswith("body_")}
    values.pop("text_id")
    return {**values, "data": {"id": row.id, **fields}, "ics": ics}


def _change_up(row: sa.Row, kept: _Texts) -> dict:
    before, before_text = _text_out(row.before)
    after, after_text = _text_out(row.after)
    return {
        **row._mapping,
        "before": None if before is None else pack_json(before),
        "after": pack_json(after),
        "before_text": kept.id_of(before_text),
        "after_text": kept.id_of(after_text),
    }


def _change_down(row: sa.Row) -> dict:
    values = {k: v for k, v in row._mapping.items() if not k.startswith("body_")}
    for side in ("before", "after"):
        if values.pop(f"{side}_text") is not None:
            text = unpack_text(row._mapping[f"body_{side}_text"])
            values[side] = {**values[side], "description": text}
    return values


def _identities(*, rowid: bool) -> None:
    """The identities in a table with or without SQLite's rowid."""
    op.create_table(
        "identities_0010",
        sa.Column("identity", sa.Text, primary_key=True),
        sa.Column("event_id", sa.String(64), nullable=False),
        sqlite_with_rowid=rowid,
    )
    op.execute(
        "INSERT INTO identities_0010 (identity, event_id) SELECT identity, event_id FROM identities"
    )
    op.drop_table("identities")
    op.rename_table("identities_0010", "identities")


def _triggers(table: str, column: str) -> list[str]:
    """What keeps texts.refs: a row that names a text counts one, whoever writes it."""
    more = f"UPDATE texts SET refs = refs + 1 WHERE id = new.{column};"
    less = f"UPDATE texts SET refs = refs - 1 WHERE id = old.{column};"
    name = f"texts_{table}_{column}"
    return [
        f"CREATE TRIGGER {name}_insert AFTER INSERT ON {table} "
        f"WHEN new.{column} IS NOT NULL BEGIN {more} END",
        f"CREATE TRIGGER {name}_delete AFTER DELETE ON {table} "
        f"WHEN old.{column} IS NOT NULL BEGIN {less} END",
        f"CREATE TRIGGER {name}_update AFTER UPDATE OF {column} ON {table} "
        f"WHEN old.{column} IS NOT new.{column} BEGIN {more} {less} END",
    ]


def _pg_triggers(table: str, column: str) -> list[str]:
    """The same counts on PostgreSQL: one PL/pgSQL function, called by a trigger for each
    kind of change."""
    name = f"texts_{table}_{column}"
    function = f"""CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'DELETE' AND NEW.{column} IS NOT NULL THEN
        UPDATE texts SET refs = refs + 1 WHERE id = NEW.{column};
    END IF;
    IF TG_OP <> 'INSERT' AND OLD.{column} IS NOT NULL THEN
        UPDATE texts SET refs = refs - 1 WHERE id = OLD.{column};
    END IF;
    RETURN NULL;
END $$"""
    each = f"FOR EACH ROW EXECUTE FUNCTION {name}()"
    return [
        function,
        f"CREATE TRIGGER {name}_insert AFTER INSERT ON {table} {each}",
        f"CREATE TRIGGER {name}_delete AFTER DELETE ON {table} {each}",
        f"CREATE TRIGGER {name}_update AFTER UPDATE OF {column} ON {table} "
        f"FOR EACH ROW WHEN (OLD.{column} IS DISTINCT FROM NEW.{column}) "
        f"EXECUTE FUNCTION {name}()",
    ]
