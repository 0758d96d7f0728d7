"""Durable state of one folder pair in SQLite: what was last synced, the pending journal,
status and counters (``store``)."""
