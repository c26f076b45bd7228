"""The network event aggregator: one calendar for a network of member organisations.

The pipeline, one module per stage (see DESIGN.md)::

    settings, sources = config.load_config(path)            # sources.yaml + AGGREGATOR_* env
    for source in schedule.due(sources):                     # APScheduler, one job per source
        result = await fetch.fetch_source(session, source)   # the only network client
        if result.outcome is failed:
            store.record_failure(...)                        # last good snapshot stays
            continue
        parsed = parse.parse_feed(result, source, ...)       # iCalendar -> Occurrences + warnings
        occurrences = normalise ...                          # zones, text, keys, fingerprints
        changes = reconcile.reconcile(stored, parsed, now)   # pure: what changed in this source
        store.replace_snapshot(source, occurrences, changes)
    events = merge.merge(store.load_occurrences())           # pure: same UID -> one event
    store.publish(events, render.ics.render_event, now)      # VEVENT bytes kept per event
    web serves render.* of the store, once per change, ETag/304/gzip

Only ``fetch`` touches the network, only ``store`` the database, only ``web`` HTTP serving.
"""

__version__ = "0.1.0"
