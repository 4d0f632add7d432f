"""The Transformer translating English Bible verses into Spanish (or the pairs of a tsv file), scored by BLEU on held-out pairs.

    python -m zerotoml run translate                          # WEB -> Reina-Valera 1909, ~5 minutes on 2 CPU cores
    python -m zerotoml run translate --beam 4                 # beam search instead of greedy decoding
    python -m zerotoml run translate --pairs eng-spa.txt      # manythings.org / Tatoeba tab-separated pairs
    python -m zerotoml run translate --steps 20000 --max-len 96 --d-model 512 --layers 6 --device cuda

Default data: the verses that Debian's sword-text-web (World English Bible) and sword-text-sparv
(Reina-Valera 1909) share, split 90/5/5 into train/val/test by a seeded permutation. A shared
byte-level BPE vocabulary (or characters, --tokenizer char) is learned on the training split
only; pairs longer than --max-len tokens on either side are left out of every split. The test
split is decoded (greedy, or beam search with --beam) and scored with sacrebleu's corpus BLEU.
Writes runs/<name>/: metrics.jsonl, run.json, checkpoints/, loss_curve.png, tokenizer.json,
translations.tsv, result.json. Note: notes/translation.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from zerotoml import generate
from zerotoml.checkpoint import CheckpointError
from zerotoml.data import Batches
from zerotoml.data.pairs import bible_pairs, bleu, read_pairs_tsv, split_pairs
from zerotoml.data.sword import APT_INSTALL
from zerotoml.devices import pick_device
from zerotoml.optim import AdamW, Cosine
from zerotoml.train import RunExistsError, train
from zerotoml.transformers.encoder_decoder import EncoderDecoder
from zerotoml.transformers.generate import beam_search
from zerotoml.transformers.seq2seq import pad_pairs, seq2seq_loss, trim_padding
from zerotoml.transformers.tokenizers import BPETokenizer, CharTokenizer
from zerotoml.tree import set_training

PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"


def load_pairs(args) -> list[tuple[str, str]] | None:
    """The sentence pairs, or None after printing why they cannot be read."""
    try:
        if args.pairs:
            return read_pairs_tsv(args.pairs, args.src_col, args.tgt_col)
        return bible_pairs(args.src, args.tgt)
    except FileNotFoundError as e:
        hint = "" if args.pairs or APT_INSTALL in str(e) else f"\nInstall the Bibles with: {APT_INSTALL}"
        hint += "" if args.pairs else "\n(or train on a tab-separated file of sentence pairs: --pairs FILE)"
        print(f"error: {e}{hint}", file=sys.stderr)
        return None


def tokenizer_for(args, train: list[tuple[str, str]], path: Path):
    """The run's tokenizer: read back from the run folder on --resume, else learned on the training split."""
    kind = BPETokenizer if args.tokenizer == "bpe" else CharTokenizer
    if args.resume and path.exists():
        return kind.load(path)
    text = "\n".join(f"{s}\n{t}" for s, t in train)
    if args.tokenizer == "bpe":
        return BPETokenizer.train(text, args.vocab_size, special_tokens=(PAD, BOS, EOS))
    return CharTokenizer.train(text, special_tokens=(PAD, BOS, EOS), unk="<unk>")


def encode_pairs(tok, pairs, max_len: int) -> tuple[list[tuple[list[int], list[int]]], list[int]]:
    """Token ids of the pairs whose two sides have 1..max_len tokens, and which pairs those are."""
    ids, kept = [], []
    for i, (s, t) in enumerate(pairs):
        x, y = tok.encode(s, allow_special=False), tok.encode(t, allow_special=False)
        if 1 <= len(x) <= max_len and 1 <= len(y) <= max_len:
            ids.append((x, y))
            kept.append(i)
    return ids, kept


def translate(m: EncoderDecoder, tok, sources: list[list[int]], *, beam: int, max_len: int, length_penalty: float,
              batch_size: int, device: torch.device) -> list[str]:
    """Decode every source (sorted by length into batches, so that little is padding), in order."""
    pad, bos, eos = (tok.token_to_id(s) for s in (PAD, BOS, EOS))
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    out: list[str] = [""] * len(sources)
    m = set_training(m, False)
    for lo in range(0, len(order), batch_size):
        idx = order[lo:lo + batch_size]
        src = pad_pairs([(sources[i], []) for i in idx], pad_id=pad, bos_id=bos, eos_id=eos, device=device)[0]
        if beam > 1:
            y, _ = beam_search(m, src, beam_size=beam, max_len=max_len, bos=bos, eos=eos,
                               length_penalty=length_penalty, src_key_padding_mask=src == pad)
        else:
            y = generate(m, src, max_len, bos=bos, eos=eos, greedy=True, src_key_padding_mask=src == pad)
        for i, row in zip(idx, y[:, 1:].tolist()):  # drop <bos>, stop at the first <eos>
            out[i] = tok.decode(row[:row.index(eos)] if eos in row else row)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="translate", description=__doc__.splitlines()[0])
    p.add_argument("--pairs", help="a tab-separated file of pairs (Tatoeba, manythings.org) instead of the Bibles")
    p.add_argument("--src-col", type=int, default=0, help="source column of --pairs (default 0)")
    p.add_argument("--tgt-col", type=int, default=1, help="target column of --pairs (default 1)")
    p.add_argument("--src", default="web", help="source SWORD module (default web: World English Bible)")
    p.add_argument("--tgt", default="sparv", help="target SWORD module (default sparv: Reina-Valera 1909)")
    p.add_argument("--tokenizer", choices=["bpe", "char"], default="bpe")
    p.add_argument("--vocab-size", type=int, default=2000, help="shared BPE vocabulary (default 2000)")
    p.add_argument("--max-len", type=int, default=32,
                   help="keep pairs of at most this many tokens a side; also the decoding limit (default 32)")
    p.add_argument("--steps", type=int, default=1200, help="optimizer steps (default 1200)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--layers", type=int, default=2, help="encoder and decoder layers each (default 2)")
    p.add_argument("--ff", type=int, default=None, help="feed-forward width (default 4 d_model)")
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--label-smoothing", type=float, default=0.1, help="as the paper (default 0.1)")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate of the cosine schedule")
    p.add_argument("--beam", type=int, default=1, help="beam size for the test split (default 1: greedy)")
    p.add_argument("--length-penalty", type=float, default=0.6, help="GNMT's alpha for beam search (default 0.6)")
    p.add_argument("--test-limit", type=int, default=0, help="decode only the first N test pairs (default 0: all)")
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:1, mps")
    p.add_argument("--out", default="runs/translate", help="run folder (default runs/translate)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its newest checkpoint")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)

    t_start, cpu_start = time.time(), time.process_time()
    pairs = load_pairs(args)
    if pairs is None:
        return 2
    train_pairs, val_pairs, test_pairs = split_pairs(pairs, val_fraction=0.05, test_fraction=0.05, seed=args.seed)
    out = Path(args.out)
    tok_path = out / "tokenizer.json"
    tok = tokenizer_for(args, train_pairs, tok_path)
    pad, bos, eos = (tok.token_to_id(s) for s in (PAD, BOS, EOS))
    splits = {name: encode_pairs(tok, part, args.max_len)
              for name, part in (("train", train_pairs), ("val", val_pairs), ("test", test_pairs))}
    for name, part in (("train", train_pairs), ("val", val_pairs), ("test", test_pairs)):
        if not splits[name][0]:
            print(f"error: no {name} pair has at most --max-len={args.max_len} tokens a side "
                  f"({len(part)} pairs before the filter); raise --max-len", file=sys.stderr)
            return 2
    device = pick_device(args.device)
    tensors = {name: pad_pairs(ids, pad_id=pad, bos_id=bos, eos_id=eos, device=device)
               for name, (ids, _) in splits.items()}
    source = f"--pairs {args.pairs}" if args.pairs else f"bible_pairs({args.src!r}, {args.tgt!r})"
    print(f"{source}: {len(pairs):,} pairs; {args.tokenizer} vocabulary {tok.vocab_size}; at most {args.max_len} "
          f"tokens a side: {len(splits['train'][0]):,} train / {len(splits['val'][0]):,} val / "
          f"{len(splits['test'][0]):,} test pairs (of {len(train_pairs):,} / {len(val_pairs):,} / "
          f"{len(test_pairs):,}); data ready in {time.time() - t_start:.0f} s")

    g = torch.Generator().manual_seed(args.seed)
    ff = args.ff or 4 * args.d_model
    model = EncoderDecoder.init(tok.vocab_size, None, args.d_model, args.heads, args.layers, args.layers, ff,
                                dropout=args.dropout, n_positions=args.max_len + 2, generator=g)
    data = Batches(tensors["train"], args.batch_size, seed=args.seed)
    schedule = Cosine(args.lr, args.steps, min_lr=args.lr / 10, warmup_steps=min(200, args.steps // 10))

    def batch_loss(m, src, tgt_in, tgt_out):
        return seq2seq_loss(m, src, tgt_in, tgt_out, pad_id=pad, label_smoothing=args.label_smoothing)

    def val_loss(m) -> float:  # teacher-forced, no smoothing: the validation cross-entropy per token
        total, n = 0.0, 0
        for batch in zip(*(t.split(256) for t in tensors["val"])):
            k = int((trim_padding(*batch, pad_id=pad)[2] != -100).sum())
            total += seq2seq_loss(m, *batch, pad_id=pad).item() * k
            n += k
        return total / n

    if not (args.resume and tok_path.exists()) and not (out / "metrics.jsonl").exists():
        out.mkdir(parents=True, exist_ok=True)
        tok.save(tok_path)
    try:
        result = train(model, AdamW.init(model, lr=args.lr, betas=(0.9, 0.98), weight_decay=0.01), data,
                       steps=args.steps, schedule=schedule, clip=1.0, eval_every=max(args.steps // 5, 1),
                       eval_fn=val_loss, out=out, seed=args.seed, device=device,
                       checkpoint_every=max(args.steps // 5, 1), resume=args.resume, log_every=10,
                       progress=not args.no_progress, loss_fn=batch_loss, name="translate")
    except (RunExistsError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    ids, kept = splits["test"]
    if args.test_limit:
        ids, kept = ids[:args.test_limit], kept[:args.test_limit]
    t0 = time.time()
    hyps = translate(result.model, tok, [x for x, _ in ids], beam=args.beam, max_len=args.max_len,
                     length_penalty=args.length_penalty, batch_size=64, device=device)
    decode_seconds = time.time() - t0
    refs = [test_pairs[i][1] for i in kept]
    score = bleu(hyps, refs)
    with open(out / "translations.tsv", "w", encoding="utf-8") as fh:
        fh.write("source\treference\ttranslation\n")
        fh.writelines(f"{test_pairs[i][0]}\t{r}\t{h}\n" for i, r, h in zip(kept, refs, hyps))
    summary = {"bleu": score, "test_pairs": len(hyps), "decoding": f"beam {args.beam}" if args.beam > 1 else "greedy",
               "steps": result.step, "val_loss": result.series("val_loss")[1][-1], "data": source,
               "tokenizer": args.tokenizer, "vocab_size": tok.vocab_size, "max_len": args.max_len,
               "train_pairs": len(splits["train"][0]), "d_model": args.d_model, "layers": args.layers,
               "heads": args.heads, "batch_size": args.batch_size, "train_seconds": result.train_seconds,
               "decode_seconds": decode_seconds, "wall_seconds": time.time() - t_start,
               "cpu_seconds": time.process_time() - cpu_start, "threads": torch.get_num_threads(), "device": str(device)}
    (out / "result.json").write_text(json.dumps(summary, indent=1) + "\n")
    for i, r, h in list(zip(kept, refs, hyps))[:3]:
        print(f"\nsource:      {test_pairs[i][0]}\nreference:   {r}\ntranslation: {h}")
    print(f"\nBLEU {score:.2f} on {len(hyps)} held-out pairs ({summary['decoding']} decoding, {decode_seconds:.0f} s) "
          f"after {result.step} steps; {result.train_seconds:.0f} s training, {summary['wall_seconds']:.0f} s in "
          f"all on {device}; run folder {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
