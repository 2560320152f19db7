"""Both readings of the copying evaluator next to the OV-eigenvalue copying measure.

Trains a laptop ``attn-only-2l`` briefly (or reuses ``--hub``), then prints, per layer-1 head,
the prefix-matching score, the per-source and literal copying scores
(:func:`induction_lens.measures.heads.copying_scores`), the OV-eigenvalue copying measure
(:func:`induction_lens.measures.circuits.ov_copying`) and two diagnostics of the per-source
ratio: how often the attended token is the most-raised token of the sample (``top1``), and the
mean share ``r[t_j] / sum_{k != j} r[t_k]`` of the attended token's raise against the other
sample tokens' (``own/others``; the per-source score is above 0 only when this is above 1).

    python benchmarks/bench_copying_readings.py --steps 800
"""

import argparse
import tempfile

import torch

import induction_lens as il
from induction_lens.data import evaluator_token_pool, repeated_tokens
from induction_lens.measures.circuits import ov_copying
from induction_lens.measures.heads import _direct_logits, copying_scores, prefix_matching_scores


def diagnostics(model, tokens, layer):
    """Per head of ``layer``: top-1 rate and mean own/others share over sample sources."""
    _, cache = model.run_with_cache(tokens)
    v = cache["v", layer][:, 1:]  # sample sources (BOS left out)
    sample = tokens[:, 1:]
    out = []
    for head in range(model.cfg.n_heads):
        logits = _direct_logits(model, layer, head, v[:, :, head])  # [b, j, vocab]
        r = torch.relu(logits - logits.mean(-1, keepdim=True))
        idx = sample[:, None, :].expand(-1, sample.shape[1], -1)
        on = r.gather(-1, idx)  # [b, j, k]
        own = on.diagonal(dim1=-2, dim2=-1)
        others = on.sum(-1) - own
        top1 = (on.argmax(-1) == torch.arange(sample.shape[1])).float().mean().item()
        share = (own / others.clamp_min(1e-9)).median().item()
        out.append((top1, share))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--hub", default=None, help="existing hub with run 'a' (default: train)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    hub_dir = args.hub or tempfile.mkdtemp()
    if args.hub is None:
        il.train("attn-only-2l", hub=hub_dir, run="a", steps=args.steps, device="cpu")
    hub = il.Hub(hub_dir)
    model = hub.load_model("a", device="cpu")
    pool = evaluator_token_pool(hub.token_frequencies("a"), model.cfg.d_vocab)
    rep = repeated_tokens(pool, n_examples=10, seq_len=25, repeats=4, seed=0)
    first = rep[:, :26]
    prefix = prefix_matching_scores(model, rep)
    per_source = copying_scores(model, first, reading="per_source")
    literal = copying_scores(model, first, reading="literal")
    ov, _ = ov_copying(model)
    diag = diagnostics(model, first, 1)
    print("| head | prefix matching | copying (per source) | copying (literal) | OV copying "
          "| top1 | own/others |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for h in range(model.cfg.n_heads):
        print(f"| 1.{h} | {prefix[1, h]:.2f} | {per_source[1, h]:.2f} | {literal[1, h]:.2f} "
              f"| {ov[1, h]:.2f} | {diag[h][0]:.2f} | {diag[h][1]:.2f} |")


if __name__ == "__main__":
    main()
