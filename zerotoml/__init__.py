"""zerotoml: machine learning from zero. Models are dataclasses of tensors, behaviour
is generic functions, math is einsum with checked shapes. Start at notes/README.md."""

from .generic import *  # noqa: F401,F403
from .generic import __all__ as _generic_all
from .tree import *  # noqa: F401,F403
from .tree import __all__ as _tree_all
from .weights import *  # noqa: F401,F403
from . import shapes  # noqa: F401
from . import layers  # noqa: F401
from .layers import *  # noqa: F401,F403
from .losses import binary_cross_entropy_with_logits, cross_entropy, kl_div, mse_loss, nll_loss  # noqa: F401
from .classifier import Classifier, accuracy  # noqa: F401
from . import optim  # noqa: F401
from . import transformers  # noqa: F401
from .data.batches import Batches  # noqa: F401
from .train import RunResult, train  # noqa: F401
from .optim import SGD, Adagrad, Adam, AdamW, Momentum, RMSprop, clip_grad_norm  # noqa: F401

__version__ = "0.1.0"
