"""BERT, the masked language model (Devlin, Chang, Lee and Toutanova 2019, "BERT: Pre-training of
Deep Bidirectional Transformers for Language Understanding", arXiv:1810.04805): token + segment +
learned position embeddings, a post-norm Transformer encoder with GELU, and the masked-LM head
(dense + GELU + LayerNorm + a projection tied to the token table + a bias). `mask_tokens` is the
80/10/10 corruption of §3.1. Note: notes/bert.md.
"""

from __future__ import annotations

import torch

from ..einsum import einsum
from ..generic import forward, loss, method
from ..layers.activation import GELU, ReLU, activation as activation_layer
from ..layers.attention import MultiheadAttention
from ..layers.dropout import Dropout
from ..layers.embedding import Embedding
from ..layers.linear import Linear
from ..layers.norm import LayerNorm
from ..losses import cross_entropy
from ..shapes import Float, Int, Tensor
from ..tree import struct
from .encoder import Encoder, EncoderLayer
from .positional import LearnedPositions, n_positions

__all__ = ["BERT", "hidden_states", "mlm_head", "mask_tokens", "masked_accuracy", "truncated_normal", "IGNORE"]

IGNORE = -100  # the label of a position that is not predicted (torch's ignore_index)


@struct
class BERT:
    """An encoder-only masked language model; field names follow BERT's checkpoints."""

    word_embeddings: Embedding                 # "vocab d_model": token table, and the MLM output weights (tied)
    position_embeddings: LearnedPositions      # "n_positions d_model"
    token_type_embeddings: Embedding | None    # "type_vocab d_model": sentence A / B; None: no segments
    emb_norm: LayerNorm                        # on the sum of the embeddings
    drop: Dropout                              # after emb_norm
    encoder: Encoder                           # post-norm EncoderLayers, GELU, no final norm
    head_dense: Linear                         # the MLM head's transform: d_model -> d_model
    head_act: GELU | ReLU                      # GELU in BERT
    head_norm: LayerNorm
    head_bias: Float[Tensor, "vocab"]          # the output bias (the weights are word_embeddings)

    def __post_init__(self):
        if any(layer.norm_first for layer in self.encoder.layers):
            raise ValueError("BERT: every encoder layer must be post-norm (EncoderLayer with norm_first=False)")

    @classmethod
    def init(cls, vocab_size: int, n_positions: int = 512, d_model: int = 768, n_layer: int = 12,
             n_head: int = 12, dim_feedforward: int | None = None, dropout: float = 0.1,
             type_vocab_size: int = 2, layer_norm_eps: float = 1e-12, activation: str = "gelu", *,
             generator=None, device=None, dtype=None) -> BERT:
        """BERT's initialiser (its modeling.py): every weight and table N(0, 0.02²) truncated at
        two standard deviations, biases zero, LayerNorm gains one. BERT-base by default
        (L = 12, H = 768, A = 12, 4H feed-forward, dropout 0.1); ``type_vocab_size=0``: no segments."""
        if d_model % n_head:
            raise ValueError(f"BERT: d_model={d_model} is not divisible by n_head={n_head}")
        d_ff = 4 * d_model if dim_feedforward is None else dim_feedforward
        h, dh = n_head, d_model // n_head
        kw = dict(device=device, dtype=dtype)
        N = lambda *s: truncated_normal(*s, std=0.02, generator=generator, **kw)  # noqa: E731
        Z = lambda *s: torch.zeros(*s, **kw)  # noqa: E731
        norm = lambda: LayerNorm.init(d_model, eps=layer_norm_eps, **kw)  # noqa: E731

        def layer() -> EncoderLayer:
            attn = MultiheadAttention(N(d_model, h, dh), N(d_model, h, dh), N(d_model, h, dh), N(h, dh, d_model),
                                      Z(h, dh), Z(h, dh), Z(h, dh), Z(d_model), Dropout(dropout))
            return EncoderLayer(attn, Linear(N(d_model, d_ff), Z(d_ff)), Linear(N(d_ff, d_model), Z(d_model)),
                                norm(), norm(), activation_layer(activation), Dropout(dropout), Dropout(dropout),
                                Dropout(dropout), norm_first=False)

        segments = Embedding(N(type_vocab_size, d_model)) if type_vocab_size else None
        return cls(Embedding(N(vocab_size, d_model)), LearnedPositions(Embedding(N(n_positions, d_model))),
                   segments, norm(), Dropout(dropout), Encoder([layer() for _ in range(n_layer)]),
                   Linear(N(d_model, d_model), Z(d_model)), activation_layer(activation), norm(), Z(vocab_size))


def truncated_normal(*shape: int, std: float, generator=None, device=None, dtype=None) -> Tensor:
    """N(0, std²) restricted to ±2 std (TensorFlow's truncated_normal): redraw what falls outside."""
    x = torch.randn(*shape, generator=generator, device=device, dtype=dtype)
    while bool((bad := x.abs() > 2).any()):
        x = torch.where(bad, torch.randn(*shape, generator=generator, device=device, dtype=dtype), x)
    return x * std


# ---------------------------------------------------------------------- forward


def hidden_states(m: BERT, input_ids: Int[Tensor, "b t"], *, token_type_ids: Int[Tensor, "b t"] | None = None,
                  src_key_padding_mask: Tensor | None = None, generator: torch.Generator | None = None
                  ) -> Float[Tensor, "b t d_model"]:
    """The encoder's output T_i for every token (§3, Figure 1)."""
    x = forward(m.word_embeddings, input_ids)
    if m.token_type_embeddings is not None:
        segments = torch.zeros_like(input_ids) if token_type_ids is None else token_type_ids
        x = x + forward(m.token_type_embeddings, segments)
    elif token_type_ids is not None:
        raise ValueError("BERT: argument `token_type_ids` given, but the model has no segment table "
                         "(built with type_vocab_size=0)")
    # input = token + segment + position embeddings, then LayerNorm and dropout     (§3.2, Figure 2)
    x = forward(m.drop, forward(m.emb_norm, forward(m.position_embeddings, x)), generator=generator)
    return forward(m.encoder, x, src_key_padding_mask=src_key_padding_mask, generator=generator)


def mlm_head(m: BERT, h: Float[Tensor, "*batch d_model"]) -> Float[Tensor, "*batch vocab"]:
    """Masked-LM logits from hidden states (BERT's cls/predictions): transform, then the tied table."""
    # T' = LayerNorm(GELU(T W + b))
    t = forward(m.head_norm, forward(m.head_act, forward(m.head_dense, h)))
    # logits = T' E^T + b_out: the output weights are the token embedding table
    return einsum(t, m.word_embeddings.W, "... d_model, vocab d_model -> ... vocab") + m.head_bias


@method
def forward(m: BERT, input_ids: Int[Tensor, "b t"], *, token_type_ids: Int[Tensor, "b t"] | None = None,
            src_key_padding_mask: Tensor | None = None, generator: torch.Generator | None = None
            ) -> Float[Tensor, "b t vocab"]:
    """Masked-LM logits at every position."""
    h = hidden_states(m, input_ids, token_type_ids=token_type_ids, src_key_padding_mask=src_key_padding_mask,
                      generator=generator)
    return mlm_head(m, h)


@method
def loss(m: BERT, inputs: Int[Tensor, "b t"], labels: Int[Tensor, "b t"], *,
         token_type_ids: Int[Tensor, "b t"] | None = None, src_key_padding_mask: Tensor | None = None,
         generator: torch.Generator | None = None) -> Float[Tensor, ""]:
    """Mean cross-entropy over the predicted positions (``labels != -100``); the head runs on
    those positions only, as BERT's code gathers them before its head."""
    picked = labels != IGNORE
    if not bool(picked.any()):
        raise ValueError("BERT loss: argument `labels` predicts no position (every label is -100); "
                         "make them with mask_tokens")
    h = hidden_states(m, inputs, token_type_ids=token_type_ids, src_key_padding_mask=src_key_padding_mask,
                      generator=generator)
    # L = −1/|M| Σ_{i∈M} log p(x_i | x̃),  M the selected positions, x̃ the corrupted input
    return cross_entropy(mlm_head(m, h[picked]), labels[picked])


def masked_accuracy(m: BERT, inputs: Int[Tensor, "b t"], labels: Int[Tensor, "b t"], **options) -> float:
    """The fraction of predicted positions (``labels != -100``) whose largest logit is the label."""
    picked = labels != IGNORE
    if not bool(picked.any()):
        raise ValueError("masked_accuracy: argument `labels` predicts no position (every label is -100)")
    with torch.no_grad():
        z = mlm_head(m, hidden_states(m, inputs, **options)[picked])
        return (z.argmax(-1) == labels[picked]).double().mean().item()


# ---------------------------------------------------------------------- masking


def mask_tokens(ids: Int[Tensor, "b t"], *, mask_id: int, vocab_size: int, p: float = 0.15,
                generator: torch.Generator | None = None, special_ids: tuple[int, ...] = ()
                ) -> tuple[Int[Tensor, "b t"], Int[Tensor, "b t"]]:
    """BERT's corruption (§3.1, Appendix A.1): in each row choose ``max(1, round(p n))`` of its
    n eligible tokens (not in ``special_ids``) at random, as BERT's create_pretraining_data.py;
    replace a chosen token by ``mask_id`` 80% of the time, by a token drawn uniformly from
    ``[0, vocab_size)`` 10% of the time, and keep it 10% of the time. Returns
    ``(inputs, labels)`` with ``labels = ids`` at the chosen positions and -100 elsewhere. Pure."""
    if ids.dim() != 2 or ids.is_floating_point() or ids.dtype == torch.bool:
        raise ValueError(f"mask_tokens: argument `ids` has shape {tuple(ids.shape)} and dtype {ids.dtype}; "
                         f"expected a (b, t) integer tensor")
    if not 0.0 < p <= 1.0:
        raise ValueError(f"mask_tokens: p={p!r}; expected a probability in (0, 1]")
    if vocab_size < 1:
        raise ValueError(f"mask_tokens: vocab_size={vocab_size!r}; expected a positive int")
    dev = generator.device if generator is not None else ids.device
    rand = lambda: torch.rand(ids.shape, generator=generator, device=dev).to(ids.device)  # noqa: E731
    eligible = torch.ones_like(ids, dtype=torch.bool)
    for s in special_ids:
        eligible &= ids != s
    # "chooses 15% of the token positions at random for prediction"                   (§3.1)
    n = eligible.sum(dim=1, keepdim=True)
    k = torch.where(n > 0, torch.clamp(torch.round(p * n), min=1), n)
    keys = torch.where(eligible, rand(), torch.full(ids.shape, 2.0, device=ids.device))
    rank = keys.argsort(dim=1).argsort(dim=1)  # a random order of each row's eligible tokens
    chosen = (rank < k) & eligible
    # "replace the i-th token with (1) the [MASK] token 80% of the time (2) a random token
    #  10% of the time (3) the unchanged i-th token 10% of the time"                      (§3.1)
    r = rand()
    to_mask, to_random = chosen & (r < 0.8), chosen & (r >= 0.8) & (r < 0.9)
    random_ids = torch.randint(0, vocab_size, ids.shape, generator=generator, device=dev).to(ids.device)
    inputs = torch.where(to_mask, torch.full_like(ids, mask_id), torch.where(to_random, random_ids, ids))
    labels = torch.where(chosen, ids, torch.full_like(ids, IGNORE))
    return inputs, labels


@method
def n_positions(m: BERT) -> int:
    """The longest input it reads: the rows of its position table."""
    return n_positions(m.position_embeddings)
