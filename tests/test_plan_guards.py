"""The delete guards' decisions (core/plan.py): when a pass's deletes are held for a person
(``hold_deletes``) and what the folder's root is (``judge_root``).  Pure tables, one row per
rule."""

from __future__ import annotations

import pytest

from watchsync.core.plan import (
    DeleteCaps,
    Deletes,
    Hold,
    RootRecord,
    RootSeen,
    RootVerdict,
    hold_deletes,
    judge_root,
)

CAPS = DeleteCaps(max_delete=100, max_percent=50, floor=10)


@pytest.mark.parametrize(
    ("deletes", "hold", "words"),
    [
        pytest.param(Deletes(remote=3, synced=60), None, "", id="a-few-deletes"),
        # Both directions of the share: more than half of what was synced, past the floor.
        pytest.param(
            Deletes(remote=31, synced=60), Hold.SHARE, "31 deletes in S3 are 51%", id="share-s3"
        ),
        pytest.param(
            Deletes(local=31, synced=60), Hold.SHARE, "31 deletes here are 51%", id="share-here"
        ),
        pytest.param(Deletes(remote=30, synced=60), None, "", id="share-exactly-half"),
        pytest.param(Deletes(remote=16, local=16, synced=60), None, "", id="share-per-direction"),
        pytest.param(Deletes(remote=10, synced=12), None, "", id="share-floor"),
        pytest.param(Deletes(remote=11, synced=12), Hold.SHARE, "91%", id="share-past-floor"),
        # A rename's deletes (content recorded at its new path) count nowhere.
        pytest.param(Deletes(remote=0, moved=500, synced=1000), None, "", id="moved-not-counted"),
        pytest.param(
            Deletes(remote=101, synced=1000),
            Hold.COUNT,
            "101 deletes exceed --max-delete 100",
            id="count",
        ),
        pytest.param(
            Deletes(remote=40, synced=1000, recent=70),
            Hold.WINDOW,
            "40 deletes after 70 in the last 60 min exceed --max-delete 100",
            id="window",
        ),
        pytest.param(Deletes(remote=40, synced=1000, recent=60), None, "", id="window-just-fits"),
        # A tree replaced within seconds (a checkout): the files written offset the deletes.
        pytest.param(
            Deletes(remote=40, synced=1000, recent=90, added=35), None, "", id="window-replaced"
        ),
        pytest.param(Deletes(remote=60, synced=100, added=40), None, "", id="share-replaced"),
        pytest.param(
            Deletes(remote=90, synced=100, added=20),
            Hold.SHARE,
            "90 deletes in S3 (70 net of 20 new files) are 70%",
            id="share-mostly-deleted",
        ),
        # An emptied side, whatever its size.
        pytest.param(
            Deletes(remote=2, synced=2, local_empty=True),
            Hold.EMPTIED_LOCAL,
            "the folder is empty while 2 files were synced",
            id="emptied-folder",
        ),
        pytest.param(
            Deletes(local=3, synced=10, listed=0),
            Hold.EMPTIED_REMOTE,
            "the listing of the prefix is empty while 10 files were synced",
            id="emptied-prefix",
        ),
        pytest.param(Deletes(local=3, synced=10, listed=None), None, "", id="prefix-not-listed"),
        pytest.param(
            Deletes(remote=3, synced=10, listed=0), None, "", id="emptied-prefix-no-local-deletes"
        ),
        pytest.param(Deletes(local=1, synced=0, listed=0), None, "", id="nothing-synced"),
    ],
)
def test_hold_deletes(deletes: Deletes, hold: Hold | None, words: str) -> None:
    held = hold_deletes(deletes, CAPS)
    assert (held.hold if held else None) is hold
    if held is not None:
        assert words in held.why


def test_hold_deletes_share_off_at_100_percent() -> None:
    assert hold_deletes(Deletes(remote=90, synced=90), DeleteCaps(max_percent=100)) is None


REC = RootRecord("2049:77", folder_id="f1")


@pytest.mark.parametrize(
    ("recorded", "seen", "marker", "verdict"),
    [
        pytest.param(None, RootSeen(2049, 77), False, RootVerdict.FIRST, id="first-start"),
        pytest.param(REC, None, False, RootVerdict.WAIT, id="missing"),
        pytest.param(REC, RootSeen(2049, 77), False, RootVerdict.SAME, id="same"),
        pytest.param(
            REC, RootSeen(2049, 77, empty=True), False, RootVerdict.SAME, id="same-emptied"
        ),
        pytest.param(
            RootRecord("2049:"), RootSeen(2049, 5), False, RootVerdict.SAME, id="old-state-dev-only"
        ),
        pytest.param(REC, RootSeen(2049, 90), False, RootVerdict.NEW, id="replaced-directory"),
        pytest.param(REC, RootSeen(64, 77), False, RootVerdict.NEW, id="another-disk"),
        pytest.param(
            REC, RootSeen(2049, 90, empty=True), False, RootVerdict.WAIT, id="unmounted-looking"
        ),
        pytest.param(
            RootRecord("2049:77", unaccepted="2049:90"),
            RootSeen(2049, 90),
            False,
            RootVerdict.UNACCEPTED,
            id="met-not-accepted",
        ),
        pytest.param(
            RootRecord("2049:77", unaccepted="2049:90"),
            RootSeen(2049, 77),
            False,
            RootVerdict.SAME,
            id="old-one-back",
        ),
        pytest.param(REC, RootSeen(64, 1, marker="f1"), True, RootVerdict.MOVED, id="marker-moved"),
        pytest.param(REC, RootSeen(64, 1, marker="f2"), True, RootVerdict.WAIT, id="other-marker"),
        pytest.param(REC, RootSeen(64, 1), True, RootVerdict.WAIT, id="marker-missing"),
        pytest.param(REC, RootSeen(2049, 77), True, RootVerdict.SAME, id="marker-same-dir"),
    ],
)
def test_judge_root(
    recorded: RootRecord | None, seen: RootSeen | None, marker: bool, verdict: RootVerdict
) -> None:
    assert judge_root(recorded, seen, marker=marker) is verdict
