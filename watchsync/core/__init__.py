"""Pure values and decisions: no clock, no I/O, no SDK.

``model`` (the entries and actions passed between layers), ``plan`` (every decision, with
its reason), ``filters`` (what takes part), ``errors`` (Failure and its kinds: the one
vocabulary for what went wrong talking to S3; the exit codes).
"""
