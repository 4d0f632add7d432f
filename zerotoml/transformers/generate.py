"""Decoding: sampling with temperature, top-k and top-p (nucleus, Holtzman et al. 2020,
arXiv:1904.09751), greedy decoding, and beam search with a length penalty (Wu et al. 2016,
arXiv:1609.08144, §7). Note: notes/transformers.md#generation.

    out = generate(gpt, prompt, 200, temperature=0.8, top_k=40, generator=g)   # "b t" -> "b t+200"
    out = generate(model, src, 50, bos=1, eos=2, greedy=True)                  # encoder-decoder
    tokens, scores = beam_search(model, src, beam_size=4, max_len=50, bos=1, eos=2, length_penalty=0.6)

A GPT decodes with its KV cache by default (`use_cache=False` recomputes the whole prefix at
every step); both give the same tokens, also past the context, where the prefix is cropped to
the last ``n_positions`` tokens (with the cache: the cache is rebuilt from that window).
"""

from __future__ import annotations

import math

import torch

from ..generic import forward, generate, generic, method
from ..layers.activation import log_softmax, softmax
from ..shapes import Float, Int, Tensor
from ..tree import set_training
from .encoder_decoder import EncoderDecoder, decode, encode
from .gpt import GPT, KVCache, n_positions

__all__ = ["generate", "beam_search", "probabilities", "next_token", "length_penalty_factor"]


@generic
def beam_search(model, src, **options):
    """The most likely target sequences under a length penalty: ``(tokens, scores)``."""


# ------------------------------------------------------------------ sampling


def _check_sampling(temperature, top_k, top_p) -> None:
    if not (isinstance(temperature, (int, float)) and temperature >= 0 and math.isfinite(temperature)):
        raise ValueError(f"generate: `temperature`={temperature!r}; expected a finite number >= 0 "
                         f"(0 is greedy decoding)")
    if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1):
        raise ValueError(f"generate: `top_k`={top_k!r}; expected an int >= 1 or None")
    if top_p is not None and not (isinstance(top_p, (int, float)) and 0 < top_p <= 1):
        raise ValueError(f"generate: `top_p`={top_p!r}; expected 0 < top_p <= 1 or None")


def probabilities(logits: Float[Tensor, "*b vocab"], *, temperature: float = 1.0, top_k: int | None = None,
                  top_p: float | None = None) -> Float[Tensor, "*b vocab"]:
    """The distribution a token is sampled from: temperature, then top-k, then top-p."""
    _check_sampling(temperature, top_k, top_p)
    if temperature == 0:  # the limit T -> 0: all the mass on the argmax
        return torch.zeros_like(logits).scatter_(-1, logits.argmax(-1, keepdim=True), 1.0)
    # P(x) = exp(z_x / T) / Σ_x' exp(z_x' / T)
    z = logits / temperature
    if top_k is not None and top_k < z.shape[-1]:
        # top-k: keep V^(k), the k largest logits (ties with the k-th are kept too)
        kth = torch.topk(z, top_k, dim=-1).values[..., -1:]
        z = z.masked_fill(z < kth, -math.inf)
    P = softmax(z)
    if top_p is not None and top_p < 1:
        # top-p: the smallest V^(p) with Σ_{x ∈ V^(p)} P(x) ≥ p, then P'(x) = P(x) / Σ_{V^(p)} P   (§3.1)
        P_sorted, order = torch.sort(P, dim=-1, descending=True)
        before = torch.cumsum(P_sorted, dim=-1) - P_sorted  # mass of the tokens ranked above
        keep = torch.zeros_like(P, dtype=torch.bool).scatter_(-1, order, before < top_p)
        P = P * keep
        P = P / P.sum(-1, keepdim=True)
    return P


def next_token(logits: Float[Tensor, "b vocab"], *, temperature: float = 1.0, top_k: int | None = None,
               top_p: float | None = None, greedy: bool = False,
               generator: torch.Generator | None = None) -> Int[Tensor, "b"]:
    """One token per row: the argmax (``greedy`` or ``temperature=0``), else a draw from
    `probabilities` with ``generator`` (torch's global RNG when None)."""
    _check_sampling(temperature, top_k, top_p)
    if greedy or temperature == 0:
        # x_t = argmax_x P(x | x_<t)
        return logits.argmax(dim=-1)
    P = probabilities(logits, temperature=temperature, top_k=top_k, top_p=top_p)
    # x_t ~ P(x | x_<t)
    return torch.multinomial(P, 1, generator=generator)[:, 0]


def _check_ids(name: str, ids: Tensor, vocab: int, what: str = "token ids", who: str = "generate") -> None:
    if not isinstance(ids, torch.Tensor) or ids.dim() != 2 or ids.dtype.is_floating_point \
            or ids.dtype in (torch.bool, torch.complex64, torch.complex128):
        got = f"{ids.dtype}{list(ids.shape)}" if isinstance(ids, torch.Tensor) else type(ids).__name__
        raise ValueError(f"{who}: argument `{name}` must be a 2-D integer tensor of {what} "
                         f"(batch, length), got {got}; add a batch axis with {name}[None]")
    if ids.shape[1] == 0:
        raise ValueError(f"{who}: argument `{name}` is empty (shape {tuple(ids.shape)}); it needs at "
                         f"least one token to condition on")
    lo, hi = int(ids.min()), int(ids.max())
    if lo < 0 or hi >= vocab:
        bad = lo if lo < 0 else hi
        where = tuple(int(i) for i in (ids == bad).nonzero()[0])
        raise ValueError(f"{who}: argument `{name}` holds the unknown token id {bad} at {where}; "
                         f"the model knows ids 0 .. {vocab - 1} (vocab={vocab})")


def _check_count(name: str, n, who: str = "generate") -> None:
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ValueError(f"{who}: `{name}`={n!r}; expected an int >= 0")


# ---------------------------------------------------------------------- GPT


@method
def generate(model: GPT, idx: Int[Tensor, "b t"], max_new_tokens: int, *, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None, greedy: bool = False,
             generator: torch.Generator | None = None, use_cache: bool = True) -> Int[Tensor, "b t_out"]:
    """``idx`` followed by ``max_new_tokens`` tokens, each drawn from the model's next-token
    distribution (see `next_token`), in eval mode (dropout off) and without gradients. The
    prompt must fit the context (``n_positions``); the growing sequence is cropped to its last
    ``n_positions`` tokens. ``use_cache`` runs one token a step through the `KVCache`."""
    vocab, n_pos = model.wte.W.shape[0], n_positions(model)
    _check_ids("idx", idx, vocab)
    _check_count("max_new_tokens", max_new_tokens)
    _check_sampling(temperature, top_k, top_p)
    b, t = idx.shape
    if t > n_pos:
        raise ValueError(f"generate: the prompt `idx` has {t} tokens but the model's context is "
                         f"n_positions={n_pos}; pass its last {n_pos} tokens (idx[:, -{n_pos}:])")
    model = set_training(model, False)
    pick = dict(temperature=temperature, top_k=top_k, top_p=top_p, greedy=greedy, generator=generator)
    out = idx
    with torch.no_grad():
        if use_cache and max_new_tokens:
            z, cache = forward(model, idx, KVCache.init(model, b))
        for i in range(max_new_tokens):
            if not use_cache:
                # the whole prefix again, cropped to the context: P(x_t | x_{t-n_pos} .. x_{t-1})
                z = forward(model, out[:, -n_pos:])
            x = next_token(z[:, -1], **pick)
            out = torch.cat([out, x[:, None]], dim=1)
            if use_cache and i + 1 < max_new_tokens:
                if cache.offset < n_pos:  # one new token at position `offset`, attending to the cache
                    z, cache = forward(model, x[:, None], cache)
                else:  # the context is full: positions shift, so the window is run afresh
                    z, cache = forward(model, out[:, -n_pos:], KVCache.init(model, b))
    return out


# ---------------------------------------------------------- encoder-decoder


def _seq2seq_checks(model: EncoderDecoder, src: Tensor, max_len: int, bos: int, eos: int, who: str) -> None:
    src_table = model.tgt_embed if model.src_embed is None else model.src_embed
    vocab, n_pos = model.tgt_embed.W.shape[0], n_positions(model)
    _check_ids("src", src, src_table.W.shape[0], "source token ids", who)
    _check_count("max_len", max_len, who)
    for name, v in (("bos", bos), ("eos", eos)):
        if not isinstance(v, int) or not 0 <= v < vocab:
            raise ValueError(f"{who}: `{name}`={v!r} is not a target token id 0 .. {vocab - 1}")
    if max_len + 1 > n_pos:
        raise ValueError(f"{who}: `max_len`={max_len} needs {max_len + 1} target positions (bos "
                         f"included) but the model has n_positions={n_pos}")


@method
def generate(model: EncoderDecoder, src: Int[Tensor, "b s"], max_len: int, *, bos: int, eos: int,
             temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
             greedy: bool = False, generator: torch.Generator | None = None,
             src_key_padding_mask: Tensor | None = None) -> Int[Tensor, "b t_out"]:
    """Target ids ``bos y_1 .. y_n`` for each source, at most ``max_len`` tokens after ``bos``;
    a row that has emitted ``eos`` is padded with ``eos``; stops when every row has."""
    _seq2seq_checks(model, src, max_len, bos, eos, "generate")
    _check_sampling(temperature, top_k, top_p)
    model = set_training(model, False)
    pick = dict(temperature=temperature, top_k=top_k, top_p=top_p, greedy=greedy, generator=generator)
    with torch.no_grad():
        memory = encode(model, src, src_key_padding_mask=src_key_padding_mask)
        y = torch.full((src.shape[0], 1), bos, dtype=torch.long, device=src.device)
        done = torch.zeros(src.shape[0], dtype=torch.bool, device=src.device)
        for _ in range(max_len):
            z = decode(model, y, memory, memory_key_padding_mask=src_key_padding_mask)
            x = torch.where(done, eos, next_token(z[:, -1], **pick))
            y, done = torch.cat([y, x[:, None]], dim=1), done | (x == eos)
            if bool(done.all()):
                break
    return y


def length_penalty_factor(n: int, α: float) -> float:
    """GNMT's lp(Y) = (5 + |Y|)^α / (5 + 1)^α; a hypothesis scores log P(Y|X) / lp(Y)."""
    # lp(Y) = (5 + |Y|)^α / (5 + 1)^α                                   (Wu et al. 2016, §7)
    return ((5 + n) / 6) ** α


def _beam(next_logp, b: int, device, *, beam_size: int, max_len: int, bos: int, eos: int,
          α: float) -> tuple[Tensor, Tensor]:
    """Beam search over ``next_logp(tgt: (b·k, t)) -> (b·k, vocab)`` log-probabilities."""
    k = beam_size
    y = torch.full((b, k, 1), bos, dtype=torch.long, device=device)
    # only the first beam is live at the start, so that the k beams do not repeat one another
    live = torch.full((b, k), -math.inf, dtype=torch.float64, device=device)
    live[:, 0] = 0.0
    hyps: list[list[tuple[float, list[int]]]] = [[] for _ in range(b)]  # (score, tokens), best first
    done = [False] * b
    lp_max = max(length_penalty_factor(1, α), length_penalty_factor(max_len, α))
    for n in range(1, max_len + 1):  # n: tokens after bos once this step's token is appended
        logp = next_logp(y.reshape(b * k, -1)).reshape(b, k, -1).double()
        V = logp.shape[-1]
        # log P(y_1..y_n | X) = log P(y_1..y_{n-1} | X) + log P(y_n | y_<n, X), over the k·V candidates
        cand = (live[:, :, None] + logp).reshape(b, k * V)
        top_s, top_i = torch.topk(cand, min(2 * k, k * V), dim=-1)
        prev, toks, scores = [], [], []
        for r in range(b):
            kept: list[tuple[int, int, float]] = []  # (beam, token, score) of the next live beams
            for rank, (s, i) in enumerate(zip(top_s[r].tolist(), top_i[r].tolist())):
                if done[r] or s == -math.inf or len(kept) == k:
                    break
                beam, tok = divmod(i, V)
                if tok != eos:
                    kept.append((beam, tok, s))
                elif rank < k:  # a finished hypothesis, if it ranks among the k best candidates
                    hyps[r].append((s / length_penalty_factor(n, α), y[r, beam].tolist() + [eos]))
            hyps[r] = sorted(hyps[r], key=lambda h: -h[0])[:k]
            kept += [(0, eos, -math.inf)] * (k - len(kept))  # dead beams fill the rest
            prev.append([p for p, _, _ in kept])
            toks.append([t for _, t, _ in kept])
            scores.append([s for _, _, s in kept])
        prev_t = torch.tensor(prev, device=device)
        y = torch.cat([torch.gather(y, 1, prev_t[:, :, None].expand(-1, -1, y.shape[2])),
                       torch.tensor(toks, device=device)[:, :, None]], dim=2)
        live = torch.tensor(scores, dtype=torch.float64, device=device)
        for r in range(b):
            # a live beam's log-probability only falls, so its best normalised score is raw / max lp
            if not done[r] and len(hyps[r]) >= k and float(live[r].max()) / lp_max <= hyps[r][-1][0]:
                done[r] = True
        if all(done):
            break
    for r in range(b):  # beams still live at max_len end there, unfinished
        if not done[r]:
            hyps[r] += [(s / length_penalty_factor(max_len, α), row)
                        for s, row in zip(live[r].tolist(), y[r].tolist()) if s > -math.inf]
    best = [max(h, key=lambda h: h[0]) for h in hyps]
    width = max(len(t) for _, t in best)
    tokens = torch.tensor([t + [eos] * (width - len(t)) for _, t in best], dtype=torch.long, device=device)
    return tokens, torch.tensor([s for s, _ in best], dtype=torch.float64, device=device)


def _check_beam(beam_size, length_penalty) -> None:
    if not isinstance(beam_size, int) or isinstance(beam_size, bool) or beam_size < 1:
        raise ValueError(f"beam_search: `beam_size`={beam_size!r}; expected an int >= 1")
    if not (isinstance(length_penalty, (int, float)) and math.isfinite(length_penalty)):
        raise ValueError(f"beam_search: `length_penalty`={length_penalty!r}; expected a finite number "
                         f"(GNMT's α: 0 none, 0.6 to 1 favour longer outputs)")


@method
def beam_search(model: EncoderDecoder, src: Int[Tensor, "b s"], *, beam_size: int, max_len: int, bos: int,
                eos: int, length_penalty: float = 0.0, src_key_padding_mask: Tensor | None = None
                ) -> tuple[Int[Tensor, "b t_out"], Float[Tensor, "b"]]:
    """For each source, the hypothesis ``bos y_1 .. y_n`` (at most ``max_len`` tokens after
    ``bos``, padded with ``eos``) of highest log P(Y|X) / lp(Y) found with ``beam_size`` beams,
    and that score. The source is encoded once; ``beam_size=1`` is greedy decoding."""
    _seq2seq_checks(model, src, max_len, bos, eos, "beam_search")
    _check_beam(beam_size, length_penalty)
    model, b, k = set_training(model, False), src.shape[0], beam_size
    with torch.no_grad():
        memory = encode(model, src, src_key_padding_mask=src_key_padding_mask)
        # every source's memory repeated for its k beams: rows r·k .. r·k + k − 1
        memory_k = torch.repeat_interleave(memory, k, dim=0)
        mask_k = None if src_key_padding_mask is None else torch.repeat_interleave(src_key_padding_mask, k, 0)

        def next_logp(tgt: Tensor) -> Tensor:
            z = decode(model, tgt, memory_k, memory_key_padding_mask=mask_k)
            return log_softmax(z[:, -1])

        return _beam(next_logp, b, src.device, beam_size=k, max_len=max_len, bos=bos, eos=eos,
                     α=float(length_penalty))


@method
def beam_search(model: object, src: Int[Tensor, "b s"], *, beam_size: int, max_len: int, bos: int,
                eos: int, length_penalty: float = 0.0) -> tuple[Int[Tensor, "b t_out"], Float[Tensor, "b"]]:
    """Any sequence-to-sequence model whose ``forward(model, src, tgt)`` gives the next-token
    logits ``"b t vocab"`` at every target position (the source is re-read at every step)."""
    _check_beam(beam_size, length_penalty)
    _check_count("max_len", max_len, "beam_search")
    model, src_k = set_training(model, False), torch.repeat_interleave(src, beam_size, dim=0)
    with torch.no_grad():
        return _beam(lambda tgt: log_softmax(forward(model, src_k, tgt)[:, -1]), src.shape[0], src.device,
                     beam_size=beam_size, max_len=max_len, bos=bos, eos=eos, α=float(length_penalty))
