"""Full collections wait for a quiet server (`CollectorPacing`), but never longer than twice their period."""

from __future__ import annotations

import gc
import time

from reelchat.service.collector import CollectorPacing


def test_a_full_collection_waits_for_quiet_and_is_forced_at_twice_its_period() -> None:
    quiet = [0.0]  # seconds since the last admission
    pacing = CollectorPacing(lambda: quiet[0], full_every_s=0.1, quiet_s=2.0)
    assert not pacing.tick()  # not due yet
    time.sleep(0.12)
    assert not pacing.tick()  # due, but requests are being admitted
    quiet[0] = 5.0
    assert pacing.tick()  # due and quiet
    assert pacing.full_collections == 1
    assert not pacing.tick()  # just ran
    quiet[0] = 0.0
    time.sleep(0.21)
    assert pacing.tick()  # a server that is never quiet still gets one every two periods
    assert pacing.full_collections == 2


def test_a_full_collection_frees_cycles() -> None:
    class Node:
        other: object = None

    gc.collect()
    a, b = Node(), Node()
    a.other, b.other = b, a
    del a, b
    pacing = CollectorPacing(lambda: 10.0, full_every_s=0.0, quiet_s=1.0)
    assert pacing.tick()
    assert not any(isinstance(o, Node) for o in gc.get_objects())
