"""The generators' states: zerotoml/rng.py (notes/training.md#checkpoints)."""

import random

import numpy as np
import torch

from zerotoml.rng import rng_state, set_rng_state


def test_restoring_a_state_replays_every_generator():
    torch.manual_seed(1), random.seed(1), np.random.seed(1)
    tensors, rest = rng_state()
    assert tensors["rng.torch"].dtype == torch.uint8 and set(rest) == {"python", "numpy"}
    draws = (torch.rand(3), random.random(), np.random.rand())
    torch.manual_seed(2), random.seed(2), np.random.seed(2)
    set_rng_state({"tensors": tensors, "json": rest})
    assert torch.equal(torch.rand(3), draws[0]) and random.random() == draws[1] and np.random.rand() == draws[2]


def test_the_state_survives_json():
    import json

    tensors, rest = rng_state()
    draw = random.random(), np.random.rand()
    set_rng_state({"tensors": tensors, "json": json.loads(json.dumps(rest))})
    assert (random.random(), np.random.rand()) == draw
