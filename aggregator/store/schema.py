"""The tables. Migrations in migrations/versions/ create and change them; keep both in step
(the triggers that count the rows naming each text are in migration 0010 only)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    text,
)

from aggregator.store.packing import pack_json, unpack_json


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes in, aware UTC datetimes out, whatever the database keeps."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class UTCMicros(TypeDecorator):
    """Aware UTC datetimes in and out, kept as microseconds since 1970: an integer of 7 or 8
    bytes where DateTime's text takes 26 (and as much again in an index)."""

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        return (value - _EPOCH) // _MICROSECOND

    def process_result_value(self, value: int | None, dialect):
        return None if value is None else _EPOCH + value * _MICROSECOND


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class Packed(TypeDecorator):
    """JSON, deflated (store/packing.py). Bytes given are taken as packed already: a
    writer packs its rows in a thread, not on the event loop."""

    impl = LargeBinary
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None or isinstance(value, bytes):
            return value
        return pack_json(value)

    def process_result_value(self, value: bytes | None, dialect):
        return None if value is None else unpack_json(value)


metadata = MetaData()

sources = Table(
    "sources",
    metadata,
    Column("id", String(100), primary_key=True),
    Column("url", Text, nullable=False),
    Column("etag", Text),
    Column("last_modified", Text),
    Column("content_hash", String(64)),
    Column("last_fetch_at", UTCDateTime),
    Column("last_success_at", UTCDateTime),
    Column("last_error", Text),
    Column("failures_in_row", Integer, nullable=False, default=0),
    Column("next_check_at", UTCDateTime),
    Column("occurrence_count", Integer, nullable=False, default=0),
    #: what the last read found: {"code", "words", "detail"} each (plain words before 0008)
    Column("warnings", JSON, nullable=False, default=list),
    # 0002: health beyond the last error
    Column("failing_since", UTCDateTime),
    Column("held_drop", Text),
    Column("gone_at", UTCDateTime),
    Column("moved_to", Text),
    # 0004: occurrences that left the feed, waiting for the next good fetch to confirm it
    Column("pending_removals", Integer, nullable=False, default=0),
    # 0004: the source's UIDs change on every fetch; identity from start and title instead
    Column("unstable_uids", Boolean, nullable=False, default=False),
    # 0007: taken out of sources.yaml at this time: unpublished, its data kept a while
    Column("removed_at", UTCDateTime),
    # 0008: the last error as a problem: {"code", "words", "detail"}
    Column("last_problem", JSON),
)

occurrences = Table(
    "occurrences",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("source_id", String(100), ForeignKey("sources.id", ondelete="CASCADE"), nullable=False),
    Column("uid", Text, nullable=False),
    Column("recurrence_id", String(32)),
    Column("title", Text, nullable=False),
    Column("start", String(32), nullable=False),
    Column("end", String(32), nullable=False),
    Column("all_day", Boolean, nullable=False),
    Column("tzid", String(100)),
    Column("url", Text),
    Column("location", Text, nullable=False, default=""),
    Column("status", String(16), nullable=False),
    Column("categories", JSON, nullable=False, default=list),
    Column("sequence", Integer, nullable=False, default=0),
    Column("fingerprint", String(64), nullable=False),
    # 0003: how an RSS item's time was found
    Column("origin", Text, nullable=False, default=""),
    # 0004: the lifecycle of an occurrence that left its feed, and inherited identities
    Column("identity", Text, nullable=False, default=""),
    Column("missing_since", UTCDateTime),
    Column("removed_at", UTCDateTime),
    # 0009: whether a new snapshot changed the row; the rest is kept by publish (an
    # incremental merge finds a changed occurrence's possible copies by them)
    Column("row_hash", String(16)),
    #: the network event it was merged into
    Column("event_id", String(64)),
    #: its title's key words (word_sets)
    Column("set_id", Integer),
    #: its start in seconds; an all-day one's local midnight in the network's zone
    Column("at", BigInteger),
    #: hashes of its identity (uid and recurrence id) and of its event address
    Column("ident_hash", BigInteger),
    Column("url_hash", BigInteger),
    # 0010: its description, in texts (none: no description)
    Column("text_id", Integer),
    Index("ix_occurrences_source_id", "source_id"),
    Index("ix_occurrences_event_id", "event_id"),
    Index("ix_occurrences_set_id", "set_id"),
    Index("ix_occurrences_at", "at"),
    Index("ix_occurrences_ident_hash", "ident_hash"),
    Index("ix_occurrences_url_hash", "url_hash"),
)

events = Table(
    "events",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("sequence", Integer, nullable=False),
    Column("created", UTCMicros, nullable=False),
    Column("last_modified", UTCMicros, nullable=False),
    Column("start", String(32), nullable=False),
    #: the merged event's fields, for JSON and Atom; since 0010 packed, without the
    #: description (text_id) and id (the row's)
    Column("data", Packed, nullable=False),
    #: the VEVENT bytes, serialised once when the event changed; since 0010 packed with its
    #: id, the fields and the description as dictionary (packing.pack_event)
    Column("ics", LargeBinary, nullable=False),
    # 0007: left the outputs at this time; kept so that its SEQUENCE goes on if it returns
    Column("unpublished_at", UTCMicros),
    # 0009: a cancelled or postponed event's end: it leaves the outputs after the retention
    Column("expires_at", UTCMicros),
    # 0010: its description, in texts (none: no description)
    Column("text_id", Integer),
    # 0011: its start and end as instants (all-day: midnight UTC), for windows
    Column("starts_at", UTCMicros),
    Column("ends_at", UTCMicros),
    # 0011: its title, place and organisers, folded, for the page's search (search.py)
    Column("search", Text),
    Index("ix_events_window", "starts_at", "ends_at"),
)

fetches = Table(
    "fetches",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source_id", String(100), ForeignKey("sources.id", ondelete="CASCADE"), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("status", Integer),
    Column("duration", Float, nullable=False, default=0.0),
    Column("bytes", Integer, nullable=False, default=0),
    Column("error", Text),
    # 0002: what came of the attempt, in words
    Column("message", Text),
    # 0006: the source's occurrences after the fetch
    Column("occurrences", Integer),
    # 0008: the message as a problem: {"code", "words", "detail"}
    Column("problem", JSON),
    Index("ix_fetches_source_at", "source_id", "at"),
)

pages = Table(
    "pages",
    metadata,
    # 0003: linked event pages of RSS items, read once per change of the item
    Column("url", Text, primary_key=True),
    Column("source_id", String(100), ForeignKey("sources.id", ondelete="CASCADE"), nullable=False),
    Column("item_fingerprint", String(64), nullable=False),
    Column("fetched_at", UTCDateTime, nullable=False),
    Column("etag", Text),
    Column("last_modified", Text),
    Column("data", JSON, nullable=False),
    Index("ix_pages_source_id", "source_id"),
)

changes = Table(
    "changes",
    metadata,
    # 0004: what subscribers saw change, for the history and the Atom change feed
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False),
    Column("at", UTCMicros, nullable=False),
    #: added, updated, rescheduled, cancelled, postponed, restored, removed
    Column("kind", String(16), nullable=False),
    Column("title", Text, nullable=False),
    #: the summaries (since 0010 packed, their descriptions in texts: before_text, after_text)
    Column("before", Packed),
    Column("after", Packed, nullable=False),
    Column("before_text", Integer),
    Column("after_text", Integer),
    Index("ix_changes_event_id", "event_id"),
    Index("ix_changes_at", "at"),
)

identities = Table(
    "identities",
    metadata,
    # 0005: the network id each member identity was published under; a group keeps its id
    # when members join or leave (rule 9)
    Column("identity", Text, primary_key=True),
    Column("event_id", String(64), nullable=False),
    # 0010: the rows in the key's b-tree, not in a second one beside it
    sqlite_with_rowid=False,
)

texts = Table(
    "texts",
    metadata,
    # 0010: long texts, each once (store/texts.py), in the order they came: appended, the
    # pages fill (ids by hash would scatter them half full); small ids name them in few bytes
    Column("id", Integer, primary_key=True, autoincrement=False),
    #: the text's hash (packing.text_key), to find it by
    Column("key", BigInteger, nullable=False),
    #: how many rows name it (kept by triggers); none: forgotten at the next write
    Column("refs", Integer, nullable=False),
    #: the text, deflated (packing.pack_text)
    Column("body", LargeBinary, nullable=False),
    Index("ix_texts_key", "key"),
    Index(
        "ix_texts_unused",
        "id",
        sqlite_where=text("refs <= 0"),
        postgresql_where=text("refs <= 0"),
    ),
)

# 0009: what an incremental merge keeps of the network's titles
word_sets = Table(
    "word_sets",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    #: a title's key words, sorted, one space apart
    Column("words", Text, nullable=False, unique=True),
    #: the words it looks for copies by, rarest first, one space apart
    Column("probes", Text, nullable=False),
)

word_index = Table(
    "word_index",
    metadata,
    Column("word", Text, primary_key=True),
    Column("set_id", Integer, primary_key=True),
)

word_counts = Table(
    "word_counts",
    metadata,
    #: how many occurrences of the network have the word in their title's key words
    Column("word", Text, primary_key=True),
    Column("count", Integer, nullable=False),
)

merge_pending = Table(
    "merge_pending",
    metadata,
    # 0009: occurrences added, changed or deleted since the last publish, with the event
    # and the word set each was merged with at the last publish (none for a new one)
    Column("key", String(64), primary_key=True),
    Column("event_id", String(64)),
    Column("set_id", Integer),
)

saved_filters = Table(
    "saved_filters",
    metadata,
    # 0011: a selection too long for a subscribe link (Google Calendar fails on a URL of
    # 256 characters or more), under a short key: /calendar.ics?f=KEY
    Column("key", String(16), primary_key=True),
    Column("query", Text, nullable=False),
    Column("used_at", UTCMicros, nullable=False),
    # 0012: when it was last fetched as a calendar or a feed (a subscriber's); None: never,
    # only a page made it. Only those are pushed out by new keys
    Column("fetched_at", UTCMicros),
    Index("ix_saved_filters_used_at", "used_at"),
    Index("ix_saved_filters_fetched_at", "fetched_at"),
)

meta = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)
