"""Tests run on tiny tensors, where torch's thread pool costs more than it saves."""

import torch

torch.set_num_threads(1)
