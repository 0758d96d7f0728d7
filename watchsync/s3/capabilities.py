"""What the S3 server is known to do, learnt as it answers: one object, shared by whoever
sends conditions (the executor's upload and delete sides, the change feed)."""

from __future__ import annotations

import enum
import threading


class Feature(enum.Enum):
    """Something a server may refuse (with ``NotImplemented``)."""

    CONDITIONAL_WRITES = "conditional writes (If-Match / If-None-Match)"
    CONDITIONAL_DELETES = "conditional deletes (an ETag per object of a batch delete)"


class Capabilities:
    """The features the server takes: all of them until it refuses one, which is then
    never sent again (thread-safe; changed only through :meth:`refused`).

    >>> server = Capabilities()
    >>> server.takes(Feature.CONDITIONAL_WRITES)
    True
    >>> server.refused(Feature.CONDITIONAL_WRITES), server.refused(Feature.CONDITIONAL_WRITES)
    (True, False)
    >>> server.takes(Feature.CONDITIONAL_WRITES), server.takes(Feature.CONDITIONAL_DELETES)
    (False, True)
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._refused: set[Feature] = set()

    def takes(self, feature: Feature) -> bool:
        """Whether the server is not known to refuse ``feature``."""
        with self._lock:
            return feature not in self._refused

    def refused(self, feature: Feature) -> bool:
        """The server refused ``feature``: True for the first caller to learn it (who says
        so, once), False for any later one."""
        with self._lock:
            if feature in self._refused:
                return False
            self._refused.add(feature)
            return True

    @property
    def conditional_writes(self) -> bool:
        return self.takes(Feature.CONDITIONAL_WRITES)

    @property
    def conditional_deletes(self) -> bool:
        return self.takes(Feature.CONDITIONAL_DELETES)
