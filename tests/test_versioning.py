"""versioning.py: which events get a new version, with which SEQUENCE, moved from where, and
what subscribers see happen (rule 8). Table-driven: no database, no server, no clock."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from datetime import UTC, date, datetime, timedelta

import pytest

from aggregator.model import ChangeKind, MergedEvent, PublishedVersion, Status
from aggregator.normalise import fingerprint, iso
from aggregator.versioning import event_change, prepare_publication, rendered, version

NOW = datetime(2027, 1, 10, 12, tzinfo=UTC)
EARLIER = NOW - timedelta(days=3)
START = datetime(2027, 2, 4, 12, tzinfo=UTC)
KEY = "render key"


def event(**values) -> MergedEvent:
    """A merged event; its fingerprint follows its content, as merge's does."""
    fields = {
        "id": "e1",
        "uid": "u@x",
        "title": "Workshop",
        "start": START,
        "end": START + timedelta(hours=2),
        "all_day": False,
        "tzid": "Europe/Copenhagen",
        "description": "",
        "url": None,
        "location": "",
        "status": Status.SCHEDULED,
        "categories": (),
        "organisers": ("Alpha",),
        "source_ids": ("alpha",),
        "members": ("k1",),
        "fingerprint": "",
        **values,
    }
    draft = MergedEvent(**fields)
    content = {k: repr(v) for k, v in asdict(draft).items() if k != "fingerprint"}
    return replace(draft, fingerprint=fingerprint(content))


def published(
    item: MergedEvent,
    sequence: int = 0,
    unpublished_at: datetime | None = None,
    render_key: str = KEY,
) -> PublishedVersion:
    """`item` as the store keeps it after a publish at EARLIER."""
    print_ = fingerprint({"event": item.fingerprint, "render": render_key})
    return PublishedVersion(item.id, print_, sequence, EARLIER, unpublished_at, lambda: item)


MOVED = START + timedelta(days=7)


@dataclass(frozen=True)
class Case:
    name: str
    #: the last published version; None: never published
    last: PublishedVersion | None
    merged: MergedEvent
    #: None: no new version
    sequence: int | None
    #: None: nothing for the history
    kind: ChangeKind | None = None
    fields: tuple[str, ...] = ()
    previous_start: datetime | date | None = None
    created: datetime = EARLIER


CASES = [
    Case("new event", None, event(), 0, ChangeKind.ADDED, created=NOW),
    Case("unchanged", published(event(), 4), event(), None),
    Case(
        "title changed",
        published(event(), 2),
        event(title="Workshop (new room)"),
        3,
        ChangeKind.UPDATED,
        ("title",),
    ),
    Case(
        "start moved",
        published(event()),
        event(start=MOVED, end=MOVED + timedelta(hours=2)),
        1,
        ChangeKind.MOVED,
        ("start", "end"),
        previous_start=START,
    ),
    Case(
        "moved before, then retitled: still moved from where it was",
        published(event(start=MOVED, end=MOVED + timedelta(hours=2), previous_start=START), 1),
        event(start=MOVED, end=MOVED + timedelta(hours=2), title="Talk"),
        2,
        ChangeKind.UPDATED,
        ("title",),
        previous_start=START,
    ),
    Case(
        "cancelled",
        published(event()),
        event(status=Status.CANCELLED),
        1,
        ChangeKind.CANCELLED,
        ("status",),
    ),
    Case(
        "postponed",
        published(event()),
        event(status=Status.POSTPONED),
        1,
        ChangeKind.POSTPONED,
        ("status",),
    ),
    Case(
        "cancelled, then postponed",
        published(event(status=Status.CANCELLED), 1),
        event(status=Status.POSTPONED),
        2,
        ChangeKind.POSTPONED,
        ("status",),
    ),
    Case(
        "restored",
        published(event(status=Status.CANCELLED), 1),
        event(),
        2,
        ChangeKind.RESTORED,
        ("status",),
    ),
    Case(
        "removed: every member took it out",
        published(event()),
        event(status=Status.CANCELLED, removed=True),
        1,
        ChangeKind.REMOVED,
        ("status",),
    ),
    Case(
        "back after being unpublished: added again, SEQUENCE goes on",
        published(event(), 3, unpublished_at=EARLIER),
        event(),
        4,
        ChangeKind.ADDED,
    ),
    Case(
        "an organiser joined: a new version, no watched field in the history",
        published(event()),
        event(organisers=("Alpha", "Beta"), source_ids=("alpha", "beta")),
        1,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_change_gets_its_version_and_its_kind(case: Case):
    known = {} if case.last is None else {case.last.id: case.last}
    publication = version([case.merged], known, KEY, NOW)
    assert publication.gone == () and publication.at == NOW
    if case.sequence is None:
        assert publication.versions == ()
        return
    (new,) = publication.versions
    assert (new.sequence, new.created, new.last_modified) == (case.sequence, case.created, NOW)
    assert new.new is (case.last is None)
    assert new.event.previous_start == case.previous_start
    assert new.fingerprint == fingerprint({"event": case.merged.fingerprint, "render": KEY})
    assert new.ics is None  # rendering is a step of its own
    if case.kind is None:
        assert new.change is None
        return
    change = new.change
    assert (change.event_id, change.at, change.kind, change.title) == (
        "e1",
        NOW,
        case.kind,
        case.merged.title,
    )
    assert tuple(change.after.get("fields", ())) == case.fields
    if case.kind is ChangeKind.ADDED:
        assert change.before is None
    else:
        assert change.before["start"] == iso(case.last.event.start)
    assert change.after["status"] == case.merged.status.value


def test_events_no_longer_merged_are_gone_once():
    a, b, c = event(id="a"), event(id="b"), event(id="c")
    known = {
        "a": published(a),
        "b": published(b),
        "c": published(c, unpublished_at=EARLIER),  # gone before: not again
    }
    publication = version([a], known, KEY, NOW)
    assert publication.versions == ()
    assert publication.gone == ("b",)


def test_an_event_that_cannot_be_rendered_is_not_gone():
    a = event(id="a", title="Broken")
    publication = prepare_publication(
        [a], {"a": published(event(id="a"))}, lambda *args: None, KEY, NOW
    )
    assert publication.versions == () and publication.gone == ()


def test_a_new_render_key_gives_every_event_a_new_version_and_no_history():
    events = [event(id=f"e{n}", title=f"Event {n}") for n in range(3)]
    known = {e.id: published(e, sequence=n) for n, e in enumerate(events)}
    assert version(events, known, KEY, NOW).versions == ()
    publication = version(events, known, "new base URL", NOW)
    assert [(v.event.id, v.sequence) for v in publication.versions] == [
        ("e0", 1),
        ("e1", 2),
        ("e2", 3),
    ]
    assert all(v.change is None for v in publication.versions)


def test_rendering_fills_the_bytes_and_leaves_out_what_fails():
    events = [event(id="a", title="Fine"), event(id="b", title="Broken")]
    publication = version(events, {}, KEY, NOW)

    def render(item, sequence, created, last_modified):
        if item.title == "Broken":
            return None
        return f"{item.title} {sequence} {created:%d} {last_modified:%d}".encode()

    written = rendered(publication, render)
    assert [(v.event.id, v.ics) for v in written.versions] == [("a", b"Fine 0 10 10")]
    assert written.gone == publication.gone and written.identities == publication.identities


def test_every_member_identity_names_its_event():
    a = event(id="a", identities=("u@x\x1f", "v@y\x1f"))
    b = event(id="b", identities=("w@z\x1f",))
    assert version([a, b], {}, KEY, NOW).identities == {
        "u@x\x1f": "a",
        "v@y\x1f": "a",
        "w@z\x1f": "b",
    }


@pytest.mark.parametrize(
    ("old", "new", "kind"),
    [
        (None, event(), ChangeKind.ADDED),
        (event(), event(title="Other"), ChangeKind.UPDATED),
        (event(), event(end=START + timedelta(hours=3)), ChangeKind.MOVED),
        (event(), event(status=Status.CANCELLED), ChangeKind.CANCELLED),
        (event(status=Status.POSTPONED), event(status=Status.CANCELLED), ChangeKind.UPDATED),
        (event(status=Status.TENTATIVE), event(), ChangeKind.UPDATED),
    ],
)
def test_event_change_speaks_change_kinds(old, new, kind):
    found, _, after = event_change(old, new)
    assert found is kind and isinstance(found, ChangeKind)
    assert found.value in {"added", "updated", "rescheduled", "cancelled"}
    assert ("fields" in after) is (old is not None)
