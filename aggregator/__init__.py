"""The network event aggregator: one calendar for a network of member organisations.

The pipeline, one module per stage (see DESIGN.md)::

    settings = config.load_config(path)                      # sources.yaml + AGGREGATOR_* env
    store.sync_sources(settings.sources)                     # a source that left: unpublished,
                                                             # kept; most leaving: refused
    for source in schedule.due(settings.sources):            # APScheduler, one job per source
        result = await fetcher.fetch(url, validators)        # the only network client, polite;
                                                             # links in content: public only
        if result failed:                                    # rule 6: nothing is lost
            store.record_attempt(source, failed)             # last good snapshot stays
            continue
        if 304 or same body: record; continue                # no parse, no write but the record
        parsed = await worker.parse(parse.parse_feed(...))   # in a worker process, on a budget:
                                                             # iCalendar -> Occurrences + warnings
                                                             # (normalise: zones, text, keys)
        if reconcile.suspicious_drop(stored, parsed):        # held until the next fetch agrees
            store.record_attempt(source, held); continue
        snapshot = reconcile.carry_over(stored, parsed)      # vanished: missing, then removed
        store.record_attempt(source, updated, snapshot)
    events = merge.merge(store.load_occurrences())           # pure: same UID -> one event
    store.publish(events, render.ics.render_event, now)      # VEVENT bytes kept per event;
                                                             # one that cannot be written: skipped
    web serves render.* of the store, once per change, ETag/304/gzip

Only ``fetch`` touches the network, only ``store`` the database, only ``web`` HTTP serving;
member content is read only in ``worker`` processes (rule 10: it is untrusted).
"""

__version__ = "0.1.0"
