"""zerotoml/devices.py: device names in, torch devices out, absent ones refused."""

import pytest
import torch

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
