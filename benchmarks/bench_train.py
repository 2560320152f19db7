"""Training throughput: induction_lens's trainer vs ``transformer_lens.train.train``.

Both train the same architecture from the same initial weights on the same sequences (TL's
DataLoader shuffles their order; the cost of a step does not depend on it), with AdamW, the
same learning rate and gradient clipping. The runs are interleaved (ours, TL, ours, TL, ...)
and the median of the repetitions is reported, so machine noise hits both sides alike.

    python benchmarks/bench_train.py [--preset attn-only-2l] [--steps 100] [--repeats 3]

Prints tokens/s of both, their ratio, and the ratio with our fused paths (attention, LayerNorm)
switched off (how much of the gain they bring).
"""

import argparse
import os
import statistics
import tempfile
import time
from dataclasses import replace

os.environ.setdefault("TQDM_DISABLE", "1")  # TL's train() always draws progress bars

import torch  # noqa: E402
from transformer_lens import HookedTransformer  # noqa: E402
from transformer_lens.train import HookedTransformerTrainConfig  # noqa: E402
from transformer_lens.train import train as tl_train  # noqa: E402

from induction_lens import get_preset, train  # noqa: E402
from induction_lens.data import make_corpus  # noqa: E402
from induction_lens.models import hooked_config, quiet_deprecation  # noqa: E402


def time_ours(cfg, steps: int, fused: bool) -> float:
    tcfg = replace(cfg.train, steps=steps, checkpoint_every=steps, fused_attention=fused,
                   warmup_steps=0)
    with tempfile.TemporaryDirectory() as hub:
        start = time.perf_counter()
        train(replace(cfg, train=tcfg), hub=hub, run="bench", progress=False, device="cpu")
        return time.perf_counter() - start


def time_tl(cfg, steps: int) -> float:
    corpus = make_corpus(cfg.data, d_vocab=cfg.model.d_vocab, n_ctx=cfg.model.n_ctx)
    tokens = torch.cat([corpus.batch(s, cfg.train.batch_size) for s in range(steps)])
    dataset = [{"tokens": row} for row in tokens]
    with quiet_deprecation():
        model = HookedTransformer(hooked_config(cfg.model, seed=cfg.train.seed))
    tl_cfg = HookedTransformerTrainConfig(
        num_epochs=1, batch_size=cfg.train.batch_size, lr=cfg.train.lr,
        weight_decay=cfg.train.weight_decay, optimizer_name="AdamW",
        max_grad_norm=cfg.train.grad_clip, device="cpu", print_every=None, max_steps=steps,
        seed=cfg.train.seed)
    start = time.perf_counter()
    tl_train(model, tl_cfg, dataset)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="attn-only-2l")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cfg = get_preset(args.preset)
    tokens = args.steps * cfg.train.batch_size * cfg.model.n_ctx
    times = {"ours": [], "ours_unfused": [], "tl": []}
    for _ in range(args.repeats):
        times["ours"].append(time_ours(cfg, args.steps, fused=True))
        times["tl"].append(time_tl(cfg, args.steps))
        times["ours_unfused"].append(time_ours(cfg, args.steps, fused=False))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"preset {args.preset} (laptop), {args.steps} steps x {cfg.train.batch_size} x "
          f"{cfg.model.n_ctx} tokens, {torch.get_num_threads()} threads, median of "
          f"{args.repeats} interleaved runs")
    for name, label in [("tl", "transformer_lens.train.train"),
                        ("ours_unfused", "induction_lens.train (fused paths off)"),
                        ("ours", "induction_lens.train")]:
        print(f"  {label:45s} {tokens / med[name]:10.0f} tokens/s  ({med[name]:.2f} s)")
    print(f"ratio induction_lens / transformer_lens: {med['tl'] / med['ours']:.2f}x "
          f"(fused paths off: {med['tl'] / med['ours_unfused']:.2f}x)")


if __name__ == "__main__":
    main()
