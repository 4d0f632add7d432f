"""A GPT training step, zerotoml against the same GPT in torch.nn + torch.optim; generation speed.

Run: python benchmarks/bench_gpt.py [--n-layer 4 --n-head 4 --d-model 128 --context 64 --batch 12]

Training step (forward + backward + AdamW), float32, the same weights and batch on both sides:
zerotoml's ``value_and_grad(loss, gpt, x, y)`` then ``step(AdamW, gpt, g)``; torch's GPT-2
written with nn.Embedding, nn.Linear, nn.LayerNorm, F.scaled_dot_product_attention(is_causal=True)
and torch.optim.AdamW. Rounds are interleaved in one process, medians are reported, and the
ratio is throughput(zerotoml) / throughput(torch) (higher is faster; 1.0 = as fast). Each
configuration is a subprocess, since the switches are read at import: both engines
(ZEROTOML_ENGINE=reference and fast) with shape checks off (ZEROTOML_CHECKS=0), each with checks
on, and the fast engine under torch.compile (the loss compiled, checks off; its compilation is
warm-up, not timed). torch's side is always eager torch.nn, under the same threads and allocator.

Every configuration runs twice: with glibc's default malloc, and with freed memory kept
(MALLOC_TRIM_THRESHOLD_ and MALLOC_MMAP_THRESHOLD_ set for the child, what jemalloc or tcmalloc
do by default). On this VM a page fault costs microseconds, and glibc's default hands the
megabyte-sized temporaries of a step back to the system, so the next step faults them in
again: both sides pay it, the side with more temporaries more.
Generation: tokens per second of ``generate`` (greedy, batch 1) with and without the KV cache.
Note: notes/transformers.md#generation.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from _machine import cpu_model

CONFIGS = [  # (label, environment, extra options of the child)
    ("reference, checks off", {"ZEROTOML_CHECKS": "0", "ZEROTOML_ENGINE": "reference"}, []),
    ("fast, checks off", {"ZEROTOML_CHECKS": "0", "ZEROTOML_ENGINE": "fast"}, []),
    ("reference, checks on", {"ZEROTOML_CHECKS": "1", "ZEROTOML_ENGINE": "reference"}, []),
    ("fast, checks on", {"ZEROTOML_CHECKS": "1", "ZEROTOML_ENGINE": "fast"}, []),
    ("fast + torch.compile", {"ZEROTOML_CHECKS": "0", "ZEROTOML_ENGINE": "fast"}, ["--compile"]),
]
MALLOC = {"glibc default": {},
          "freed memory kept": {"MALLOC_TRIM_THRESHOLD_": str(1 << 30), "MALLOC_MMAP_THRESHOLD_": str(1 << 25)}}



def torch_gpt(gpt):
    """The same GPT as torch.nn modules, with zerotoml's weights copied in."""
    import torch
    import torch.nn.functional as F
    from einops import rearrange
    from torch import nn

    V, d = gpt.wte.W.shape
    h = gpt.blocks[0].self_attn.W_q.shape[1]

    class Block(nn.Module):
        def __init__(self, b):
            super().__init__()
            a = b.self_attn
            self.ln_1, self.ln_2 = nn.LayerNorm(d), nn.LayerNorm(d)
            self.c_attn, self.c_proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
            self.c_fc, self.mlp_proj = nn.Linear(d, b.linear1.W.shape[1]), nn.Linear(b.linear1.W.shape[1], d)
            with torch.no_grad():
                for ln, ours in ((self.ln_1, b.norm1), (self.ln_2, b.norm2)):
                    ln.weight.copy_(ours.weight)
                    ln.bias.copy_(ours.bias)
                W = torch.cat([rearrange(w, "d h e -> (h e) d") for w in (a.W_q, a.W_k, a.W_v)])
                self.c_attn.weight.copy_(W)
                self.c_attn.bias.copy_(torch.cat([a.b_q.flatten(), a.b_k.flatten(), a.b_v.flatten()]))
                self.c_proj.weight.copy_(rearrange(a.W_o, "h e d -> d (h e)"))
                self.c_proj.bias.copy_(a.b_o)
                self.c_fc.weight.copy_(b.linear1.W.T)
                self.c_fc.bias.copy_(b.linear1.b)
                self.mlp_proj.weight.copy_(b.linear2.W.T)
                self.mlp_proj.bias.copy_(b.linear2.b)

        def forward(self, x):
            B, T, _ = x.shape
            q, k, v = self.c_attn(self.ln_1(x)).split(d, dim=2)
            q, k, v = (t.view(B, T, h, d // h).transpose(1, 2) for t in (q, k, v))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.c_proj(y.transpose(1, 2).reshape(B, T, d))
            return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = nn.Embedding(V, d)
            self.wpe = nn.Embedding(gpt.wpe.table.W.shape[0], d)
            self.blocks = nn.ModuleList(Block(b) for b in gpt.blocks)
            self.ln_f = nn.LayerNorm(d)
            with torch.no_grad():
                self.wte.weight.copy_(gpt.wte.W)
                self.wpe.weight.copy_(gpt.wpe.table.W)
                self.ln_f.weight.copy_(gpt.ln_f.weight)
                self.ln_f.bias.copy_(gpt.ln_f.bias)

        def forward(self, idx, targets):
            x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
            for b in self.blocks:
                x = b(x)
            logits = self.ln_f(x) @ self.wte.weight.T  # tied head
            return F.cross_entropy(logits.view(-1, V), targets.view(-1))

    return GPT()


def measure(a: argparse.Namespace) -> dict:
    import torch

    import zerotoml as zt
    from zerotoml import engine
    from zerotoml.engine import gemm
    from zerotoml.optim import AdamW
    from zerotoml.transformers import GPT

    torch.set_num_threads(a.threads or torch.get_num_threads())
    g = torch.Generator().manual_seed(0)
    gpt = GPT.init(a.vocab, a.context, a.d_model, a.n_layer, a.n_head, dropout=0.0, generator=g)
    tgpt = torch_gpt(gpt)
    x = torch.randint(0, a.vocab, (a.batch, a.context), generator=g)
    y = torch.randint(0, a.vocab, (a.batch, a.context), generator=g)
    l_zt, l_t = zt.loss(gpt, x, y).item(), tgpt(x, y).item()
    assert abs(l_zt - l_t) < 1e-4, f"the two GPTs disagree: loss {l_zt} vs {l_t}"
    opt = AdamW.init(gpt, lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1)
    topt = torch.optim.AdamW(tgpt.parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1)

    loss_fn = zt.loss
    if a.compile:
        loss_fn = torch.compile(lambda m, x, y: zt.loss(m, x, y))

    def zt_step():
        value, grads = zt.value_and_grad(loss_fn, gpt, x, y)
        zt.step(opt, gpt, grads)

    def torch_step():
        topt.zero_grad(set_to_none=True)
        tgpt(x, y).backward()
        topt.step()

    def timed(f, n) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            f()
        return (time.perf_counter() - t0) / n

    timed(zt_step, 3), timed(torch_step, 3)  # warm up
    t_zt, t_torch = [], []
    for _ in range(a.rounds):
        t_zt.append(timed(zt_step, a.steps))
        t_torch.append(timed(torch_step, a.steps))
    tokens = a.batch * a.context
    gemm_library = "torch"
    if engine.fast():
        n_onednn = sum(gemm.choices.values())
        gemm_library = f"oneDNN for {n_onednn} of {len(gemm.choices)} product shapes" if gemm.choices else "torch"
    out = {"checks": zt.shapes.CHECKS, "engine": engine.current(), "compile": a.compile, "gemm": gemm_library,
           "threads": torch.get_num_threads(),
           "zerotoml_ms": 1e3 * statistics.median(t_zt), "torch_ms": 1e3 * statistics.median(t_torch),
           "zerotoml_tok_s": tokens / statistics.median(t_zt), "torch_tok_s": tokens / statistics.median(t_torch)}
    out["ratio"] = out["zerotoml_tok_s"] / out["torch_tok_s"]
    if a.gen_tokens and not a.compile:
        m = zt.tree.set_training(gpt, False)
        prompt = torch.zeros(1, 1, dtype=torch.long)
        for cache in (True, False):
            zt.generate(m, prompt, 4, greedy=True, use_cache=cache)  # warm up
            times = [timed(lambda: zt.generate(m, prompt, a.gen_tokens, greedy=True, use_cache=cache), 1)
                     for _ in range(3)]
            out[f"gen_tok_s_{'cache' if cache else 'nocache'}"] = a.gen_tokens / statistics.median(times)
    return out


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-layer", type=int, default=4)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--context", type=int, default=64)
    p.add_argument("--batch", type=int, default=12)
    p.add_argument("--vocab", type=int, default=76)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--steps", type=int, default=5, help="training steps per round")
    p.add_argument("--gen-tokens", type=int, default=None,
                   help="tokens generated for the tokens/s rows (default: the context length)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's default)")
    p.add_argument("--json", help="also write the results to this file")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile row (its warm-up compiles "
                   "for about a minute)")
    p.add_argument("--default-malloc-only", action="store_true", help="skip the runs with freed memory kept")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--compile", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.gen_tokens is None:
        a.gen_tokens = a.context
    if a.child:
        print(json.dumps(measure(a)))
        return []
    forwarded = [arg for arg in (argv if argv is not None else sys.argv[1:]) if arg != "--child"]
    results = []
    for label, env, extra in CONFIGS:
        if a.no_compile and "--compile" in extra:
            continue
        for malloc, malloc_env in MALLOC.items():
            if a.default_malloc_only and malloc_env:
                continue
            cmd = [sys.executable, __file__, "--child", *forwarded, *extra]
            done = subprocess.run(cmd, env=dict(os.environ, **env, **malloc_env), capture_output=True, text=True)
            if done.returncode:
                sys.exit(f"{label} ({malloc}): the measurement failed:\n{done.stderr}")
            results.append({"config": label, "malloc": malloc, **json.loads(done.stdout.strip().splitlines()[-1])})
    print(f"GPT {a.n_layer} layers, {a.n_head} heads, d_model {a.d_model}, context {a.context}, batch "
          f"{a.batch}, vocab {a.vocab}; forward + backward + AdamW, float32, {results[0]['threads']} threads; "
          f"CPU: {cpu_model()}; the fast engine's float32 products: "
          f"{next((r['gemm'] for r in results if r['engine'] == 'fast'), '-')} (measured), torch.nn's on torch.mm")
    print(f"{'configuration':<28}{'malloc':<19}{'zerotoml':>11}{'torch.nn':>11}{'throughput ratio':>18}"
          f"{'gen tok/s cache':>17}{'no cache':>10}")
    for r in results:
        gen = [f"{r[k]:.0f}" if k in r else "-" for k in ("gen_tok_s_cache", "gen_tok_s_nocache")]
        print(f"{r['config']:<28}{r['malloc']:<19}{r['zerotoml_ms']:>8.1f} ms{r['torch_ms']:>8.1f} ms"
              f"{r['ratio']:>17.3f}x{gen[0]:>17}{gen[1]:>10}")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(results, fh, indent=1)
    return results


if __name__ == "__main__":
    main()
