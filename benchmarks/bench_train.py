"""Training throughput: induction_lens's trainer vs ``transformer_lens.train.train``.

Both train the same architecture from the same initial weights on the same sequences (TL's
DataLoader shuffles their order; the cost of a step does not depend on it), with AdamW, the
same learning rate and gradient clipping. The runs are interleaved (ours, TL, ours with the
fast forward off, ours, TL, ...) and the median of the repetitions is reported, so machine
noise hits all sides alike.

What is timed: for ours, the whole ``induction_lens.train`` call as a user makes it (building
the model and the corpus, the run directory, every batch generated on the fly, and the
preset's checkpoints, every 50 steps plus step 0, each with weights, optimizer state, log and
sha256 sums); for TransformerLens, only its ``train`` call (the model is built and all batches
are generated before the clock starts). The default 200 steps is a fifth of a laptop run.

    python benchmarks/bench_train.py [--preset attn-only-2l,mlp-2l] [--steps 200] [--repeats 3]
        [--threads N] [--floor]

Prints, per preset, the tokens/s of each side, then one line per preset with the ratio
ours / TransformerLens and the ratio with our fast forward switched off
(``TrainConfig.fused_attention=False``: TransformerLens's own forward through our trainer).

``--floor`` also profiles our training step (``torch.profiler``, 10 steps after 3 warm-up
steps) and prints how much of it the matrix products and the attention kernels take, forward
and backward. Both sides do that arithmetic in float32, so TransformerLens's step time over
that time bounds the ratio a trainer calling the same kernels could reach on this machine
(only faster kernels, or less precision, would raise it).
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
from induction_lens.models import (  # noqa: E402
    build_model,
    fused_attention,
    hooked_config,
    quiet_deprecation,
)
from induction_lens.models.fast import fast_lm_loss  # noqa: E402
from induction_lens.train import make_optimizer  # noqa: E402

ARITHMETIC = ("aten::mm", "aten::addmm", "aten::bmm", "aten::_scaled_dot_product_flash_attention")
"""Profiler op names (prefixes) of the matrix products and the attention kernels (forward and
backward): the arithmetic both trainers must do."""


def time_ours(cfg, steps: int, fused: bool) -> float:
    tcfg = replace(cfg.train, steps=steps, fused_attention=fused, warmup_steps=0)
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


def arithmetic_ms(cfg, steps: int = 10) -> tuple[float, float]:
    """Milliseconds per training step of ours: ``(matrix products and attention kernels,
    everything the profiler saw)``, from the self CPU times of ``steps`` profiled steps."""
    from torch.profiler import ProfilerActivity, profile

    net = build_model(cfg.model, seed=cfg.train.seed, device="cpu")
    optimizer = make_optimizer(net, cfg.train)
    corpus = make_corpus(cfg.data, d_vocab=cfg.model.d_vocab, n_ctx=cfg.model.n_ctx)
    params = list(net.parameters())

    def step(s: int) -> None:
        fast_lm_loss(net, corpus.batch(s, cfg.train.batch_size)).backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.train.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    with fused_attention(net, True):
        for s in range(3):
            step(s)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for s in range(steps):
                step(3 + s)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    kernels = sum(e.self_cpu_time_total for e in events if e.key.startswith(ARITHMETIC))
    return kernels / 1e3 / steps, total / 1e3 / steps


def bench(preset: str, steps: int, repeats: int) -> dict[str, float]:
    """Median seconds of each side for one preset (interleaved repeats)."""
    cfg = get_preset(preset)
    times: dict[str, list[float]] = {"ours": [], "tl": [], "ours_unfused": []}
    for _ in range(repeats):
        times["ours"].append(time_ours(cfg, steps, fused=True))
        times["tl"].append(time_tl(cfg, steps))
        times["ours_unfused"].append(time_ours(cfg, steps, fused=False))
    med = {k: statistics.median(v) for k, v in times.items()}
    tokens = steps * cfg.train.batch_size * cfg.model.n_ctx
    print(f"preset {preset} (laptop), {steps} steps x {cfg.train.batch_size} x "
          f"{cfg.model.n_ctx} tokens, {torch.get_num_threads()} threads, median of "
          f"{repeats} interleaved runs", flush=True)
    for name, label in [("tl", "transformer_lens.train.train"),
                        ("ours_unfused", "induction_lens.train (fast forward off)"),
                        ("ours", "induction_lens.train")]:
        print(f"  {label:45s} {tokens / med[name]:10.0f} tokens/s  ({med[name]:.2f} s)",
              flush=True)
    return med


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="attn-only-2l,mlp-2l",
                        help="comma-separated preset names")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads for both sides (default: torch's)")
    parser.add_argument("--floor", action="store_true",
                        help="also profile our step: the share of matrix products and attention")
    args = parser.parse_args()
    if args.steps < 1 or args.repeats < 1:
        parser.error(f"--steps {args.steps} and --repeats {args.repeats} must be at least 1")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    presets = [p.strip() for p in args.preset.split(",") if p.strip()]
    results = {p: bench(p, args.steps, args.repeats) for p in presets}
    for preset, med in results.items():
        print(f"ratio induction_lens / transformer_lens, {preset}: "
              f"{med['tl'] / med['ours']:.2f}x "
              f"(fast forward off: {med['tl'] / med['ours_unfused']:.2f}x)")
    if args.floor:
        for preset, med in results.items():
            kernels, total = arithmetic_ms(get_preset(preset))
            tl_step = med["tl"] / args.steps * 1e3
            print(f"floor, {preset}: matrix products + attention kernels {kernels:.1f} ms of our "
                  f"profiled {total:.1f} ms step; TransformerLens's step {tl_step:.1f} ms, so a "
                  f"trainer calling the same kernels cannot exceed {tl_step / kernels:.2f}x here")


if __name__ == "__main__":
    main()
