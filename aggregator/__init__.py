"""The network event aggregator: one calendar for a network of member organisations.

The pipeline, one module per stage (see DESIGN.md)::

    settings = config.load_config(path)                # sources.yaml + AGGREGATOR_* env
    store.sync_sources(settings.sources)               # one that left: unpublished, kept;
                                                       # most leaving at once: refused
    every tick: for id in store.due_sources(now):      # schedule: the store knows what is due
        # refresh: one source's cycle, a short driver
        current = store.source_for_update(id)          # read: its state
        fetched = fetcher.fetch(decide.fetch_plan(...))  # the only network client; polite;
                                                       # links in content: public only
        parsed = parse.read_source(fetched, kept_pages)  # only a new body; in a worker
                                                       # on a budget (rule 10): iCalendar or
                                                       # RSS + linked pages -> Occurrences,
                                                       # Problems (normalise: zones, text, keys)
        stored = store.load_occurrences(id)            # only if something is to be measured
        update = decide.decide(current.state, fetched, stored, parsed, now, settings)
                                                       # pure: outcome, next check (backoff,
                                                       # Retry-After), snapshot (reconcile:
                                                       # carry over, hold a drop) -> SourceUpdate
        store.apply(update)                            # the one write, one transaction
    publish.publish(store, settings, now)              # after any update:
        events = merge.merge(store.load_occurrences())  # pure: the same event -> one
        events = publish.retained(events, now)         # cancelled: gone after retention
        store.write_publication(known ->               # in the store's write turn: what is
            versioning.version(events, known, now)     # published -> pure: SEQUENCE, moved
            + render.ics.render_vevent)                # from, ChangeKind; the store writes it
    web serves render.* of the store: bytes made once per change, ETag/304/gzip;
    pages in the reader's language (gettext catalogues in locale/, Babel dates)

Only ``fetch`` touches the network, only ``store`` the database, only ``web`` HTTP serving;
member content is read only in ``worker`` processes (rule 10: it is untrusted).
"""

__version__ = "0.1.0"
