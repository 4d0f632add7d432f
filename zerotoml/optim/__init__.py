"""Optimizers, learning-rate schedules and gradient clipping, checked step for step
against torch.optim. Note: notes/optimizers.md

    opt = Adam.init(model, lr=1e-3)
    loss, grads = value_and_grad(f, model, x, y)
    grads, norm = clip_grad_norm(grads, 1.0)
    step(opt, model, grads, lr=lr_at(schedule, int(opt.t)))   # mutates model and opt
"""

from .adagrad import Adagrad
from .adam import Adam, AdamW
from .clip import clip_grad_norm
from .rmsprop import RMSprop
from .schedules import Constant, Cosine, LinearWarmup
from .sgd import SGD, Momentum

__all__ = [
    "SGD",
    "Momentum",
    "Adagrad",
    "RMSprop",
    "Adam",
    "AdamW",
    "Constant",
    "LinearWarmup",
    "Cosine",
    "clip_grad_norm",
]
