"""Durable state of one folder pair in SQLite: ``store`` opens it as one object whose parts
share the database — ``synced`` (what was last synced), ``journal`` (the write-ahead
journal), ``status`` (status fields, counters, meta) and ``guards`` (the delete guards'
records) — over ``db`` (the connections) and ``lock`` (the pair's lock)."""
