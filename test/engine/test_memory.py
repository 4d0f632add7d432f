"""zerotoml/engine/memory.py: with freed memory kept, a block freed and asked for again comes
back from the heap, without page faults."""

import resource
import sys

import pytest
import torch

from zerotoml.engine.memory import keep_freed_memory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_keep_freed_memory_stops_the_page_faults_of_a_repeated_large_block():
    """With glibc's default, a 16 MB block freed and asked for again comes back as fresh pages
    (a page fault each on first touch); once freed memory is kept, it comes back from the heap."""
    if not keep_freed_memory():
        pytest.skip("no glibc mallopt here")
    torch.empty(1 << 22).fill_(1.0)  # the first time, fresh pages
    trials = []
    for _ in range(3):  # (the least of three: another thread's allocations may move the heap's top once)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(10):
            torch.empty(1 << 22).fill_(1.0)  # 16 MB written, freed
        trials.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    faults = min(trials)
    assert faults < 2 * 4096, f"{faults} page faults for 10 reuses of a 16 MB block"
