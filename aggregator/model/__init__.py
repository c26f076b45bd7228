"""Plain typed values that cross stage borders. No library object lives here.

One module per border: kinds.py (the enums every stage speaks, and Problem), settings.py
(sources.yaml as values), feeds.py (what a fetch brings and the parse stage reads),
cycle.py (a source's state, attempts and the intent of its cycle), events.py (network
events, their versions and history). Import them from here: ``from aggregator.model import
Occurrence``.
"""

from __future__ import annotations

from aggregator.model.cycle import (
    Attempt,
    Change,
    Fetched,
    FetchRecord,
    SourceForUpdate,
    SourceState,
    SourceUpdate,
)
from aggregator.model.events import (
    ChangeRecord,
    EventVersion,
    MergedEvent,
    NetworkEvent,
    Publication,
    PublishedVersion,
)
from aggregator.model.feeds import (
    CachedPage,
    FeedItem,
    FetchResult,
    FoundEvent,
    Occurrence,
    PageData,
    ParsedFeed,
    SourceRead,
    Validators,
)
from aggregator.model.kinds import (
    ChangeKind,
    FetchOutcome,
    Problem,
    SourceKind,
    Status,
)
from aggregator.model.settings import (
    Limits,
    MergeSettings,
    Network,
    OutputSettings,
    SchedulerSettings,
    Settings,
    Source,
)

__all__ = [
    "Attempt",
    "CachedPage",
    "Change",
    "ChangeKind",
    "ChangeRecord",
    "EventVersion",
    "FeedItem",
    "FetchOutcome",
    "FetchRecord",
    "FetchResult",
    "Fetched",
    "FoundEvent",
    "Limits",
    "MergeSettings",
    "OutputSettings",
    "SchedulerSettings",
    "MergedEvent",
    "Network",
    "NetworkEvent",
    "Occurrence",
    "PageData",
    "ParsedFeed",
    "Problem",
    "Publication",
    "PublishedVersion",
    "Settings",
    "Source",
    "SourceForUpdate",
    "SourceKind",
    "SourceRead",
    "SourceState",
    "SourceUpdate",
    "Status",
    "Validators",
]
