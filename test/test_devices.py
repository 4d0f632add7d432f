"""zerotoml/devices.py: device names in, torch devices out, absent ones refused."""

import resource
import sys

import pytest
import torch

from zerotoml.engine.memory import keep_freed_memory
from zerotoml.devices import (
    available_devices,
    describe_device,
    pick_device,
    synchronize,
)


def test_auto_picks_the_best_present_device():
    expected = "cuda" if torch.cuda.is_available() else ("mps" if "mps" in available_devices() else "cpu")
    assert pick_device("auto").type == expected
    assert pick_device(None).type == expected
    assert available_devices()[-1] == "cpu"


def test_named_devices_pass_through():
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device(torch.device("cpu")) == torch.device("cpu")
    assert describe_device(torch.device("cpu")).startswith("cpu (")
    synchronize(torch.device("cpu"))  # a no-op on the CPU must not raise


def test_bad_names_are_refused_clearly():
    with pytest.raises(ValueError, match=r"device='gpu0' is not a device name"):
        pick_device("gpu0")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present")
def test_absent_cuda_is_refused_listing_what_exists():
    with pytest.raises(ValueError, match=r"CUDA is not available here \(available: .*cpu\)"):
        pick_device("cuda")


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
