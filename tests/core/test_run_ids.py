"""Generated run ids: unique and unguessable, across threads and forks."""

from __future__ import annotations

import os
import re
import sys
import threading

import pytest
from agentengine.runtime.engine import _random_hex


def test_ids_are_96_random_bits_in_hex_and_never_repeat_across_threads() -> None:
    drawn: list[list[str]] = [[] for _ in range(4)]

    def draw(into: list[str]) -> None:
        into.extend(_random_hex() for _ in range(5000))

    threads = [threading.Thread(target=draw, args=(into,)) for into in drawn]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [i for into in drawn for i in into]
    assert len(set(everything)) == len(everything) == 20_000
    assert all(re.fullmatch(r"[0-9a-f]{24}", i) for i in everything)


@pytest.mark.skipif(sys.platform == "win32", reason="os.fork is POSIX only")
def test_a_forked_child_does_not_reuse_its_parents_buffered_ids() -> None:
    _random_hex()  # the buffer now holds ids the parent will hand out next
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next id, then leave at once
        os.write(write_end, _random_hex().encode())
        os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    child_id = os.read(read_end, 100).decode()
    os.close(read_end)
    parent_ids = {_random_hex() for _ in range(300)}
    assert re.fullmatch(r"[0-9a-f]{24}", child_id)
    assert child_id not in parent_ids
