"""Identifiers come from the system's CSPRNG, read in blocks: never repeated, never shared with a fork."""

from __future__ import annotations

import os

from reelchat import ids


def test_ids_have_their_shapes_and_never_repeat() -> None:
    made = [ids.new_task_id() for _ in range(3000)] + [ids.new_sid() for _ in range(3000)]
    assert len(set(made)) == len(made)
    assert all(ids.TASK_ID_RE.fullmatch(t) for t in made[:3000])
    assert all(ids.SID_RE.fullmatch(s) for s in made[3000:])
    # across the 4 KiB reads: 3000 x 26 bytes is about twenty of them
    assert len({ids.token_bytes(16) for _ in range(1000)}) == 1000


def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    ids.token_bytes(1)  # the parent has a block buffered
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, to the parent
        os.close(read)
        os.write(write, "\n".join(ids.new_sid() for _ in range(50)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = set(pipe.read().split("\n"))
    os.waitpid(pid, 0)
    parent = {ids.new_sid() for _ in range(50)}
    assert len(child) == 50
    assert not child & parent
