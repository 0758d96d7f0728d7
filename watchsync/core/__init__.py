"""Pure values and decisions: no clock, no I/O, no SDK.

``model`` (the entries and actions passed between layers), ``plan`` (every decision, with
its reason), ``filters`` (what takes part), ``errors`` (the failure types and exit codes).
"""
