"""A denoiser for low-dimensional data (2-D toy sets): an MLP that sees x, the time t and,
optionally, a class label. Note: notes/unet.md#the-2-d-denoiser.

What the U-Net is to images, this is to points: ``forward(mlp, x, t)`` predicts the noise
ε_θ(x_t, t) (or a velocity, or a score: the network does not know which). The time enters as
the U-Net's does, sinusoids then an MLP (zerotoml/diffusion/embeddings.py), and is added to
every hidden layer, the class label's row with it.
"""

from __future__ import annotations

from ..generic import forward, method
from ..layers.activation import silu
from ..layers.embedding import Embedding
from ..layers.linear import Linear
from ..shapes import Float, Int, Tensor
from ..tree import struct
from .common import times
from .embeddings import TimeEmbedding, class_rows

__all__ = ["MLPDenoiser"]


@struct
class MLPDenoiser:
    """``h_0 = silu(W_in x + e)``, ``h_k = silu(W_k h_{k−1} + e)``, ``ε = W_out h_L`` with
    ``e = temb(t) [+ E[y]]``. ``null_class`` is the class row that means "no label"."""

    input: Linear
    hidden: list[Linear]
    output: Linear
    time_embedding: TimeEmbedding
    class_embedding: Embedding | None
    null_class: int | None = None

    @classmethod
    def init(cls, d: int = 2, width: int = 128, depth: int = 3, *, time_scale: float = 1.0,
             num_classes: int | None = None, null_class: bool = False, generator=None, device=None,
             dtype=None) -> MLPDenoiser:
        """``depth`` layers of ``width`` units (the input layer and depth − 1 hidden ones), torch's
        default initialiser. ``time_scale`` multiplies t before the sinusoids: 1 for integer
        steps 0 .. T − 1, about 1000 for times in [0, 1]."""
        if depth < 1:
            raise ValueError(f"MLPDenoiser.init: depth={depth}; expected at least 1 layer")
        kw = dict(generator=generator, device=device, dtype=dtype)
        table = None if num_classes is None else Embedding.init(num_classes + int(null_class), width, **kw)
        return cls(Linear.init(d, width, **kw), [Linear.init(width, width, **kw) for _ in range(depth - 1)],
                   Linear.init(width, d, **kw), TimeEmbedding.init(width, width, scale=time_scale, **kw), table,
                   num_classes if (num_classes is not None and null_class) else None)


@method
def forward(m: MLPDenoiser, x: Float[Tensor, "b d"], t: Tensor | int | float, *,
            class_labels: Int[Tensor, "b"] | None = None) -> Float[Tensor, "b d"]:
    """ε_θ(x_t, t[, y]); ``t`` one time per example (or one for all)."""
    # e = MLP(PE(s t)) [+ E[y]]
    e = forward(m.time_embedding, times(t, x))
    rows = class_rows("MLPDenoiser", m.class_embedding, m.null_class, class_labels, x.shape[0], x.device)
    e = e if rows is None else e + rows
    # h_0 = silu(W_in x + b_in + e),  h_k = silu(W_k h_{k−1} + b_k + e)
    h = silu(forward(m.input, x) + e)
    for layer in m.hidden:
        h = silu(forward(layer, h) + e)
    # ε = W_out h_L + b_out
    return forward(m.output, h)
