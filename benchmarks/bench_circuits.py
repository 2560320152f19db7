"""How long the weight-based circuit measures take, and how much memory, per checkpoint.

Run: ``python benchmarks/bench_circuits.py [--repeats N] [--skip-large]``

1. Every laptop attention-only preset (and the smeared ones): the time of all weight-based
   measures of one checkpoint (``circuit_weights`` + QK trace + OV eigenvalues + all composition
   scores, i.e. ``circuit_scores`` given the previous-token scores), median of ``--repeats``
   runs, next to a naive reference that materialises every ``d_vocab x d_vocab`` matrix
   (measured in the same run: compare the ratio, not the absolute times, across machines),
   and with one torch thread.
   The previous-token forward pass that the QK trace needs (a behavioural measurement on
   example text, not a weight computation) is timed separately.
2. A GPT-2-sized vocabulary (50257 tokens, d_model 768, 12 heads of 64, 2 layers): time, the
   largest tensor any torch operation returned, and the process's peak RSS before and after,
   against the 10 GB that one float32 ``d_vocab x d_vocab`` matrix would take.

Weights are random (timing does not depend on training). Timings on a shared 2-core machine
vary run to run; read the ratios.
"""

import argparse
import resource
import statistics
import time

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from induction_lens.config import ModelSpec
from induction_lens.measures import circuits as C
from induction_lens.measures.heads import previous_token_scores
from induction_lens.models import build_model
from induction_lens.presets import get_preset

PRESETS = ("attn-only-2l", "attn-only-3l", "attn-only-4l", "attn-only-6l", "smeared-2l")


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@torch.no_grad()
def naive_measures(model, prev: torch.Tensor) -> None:
    """The same numbers the obvious way: materialise every vocab x vocab circuit (LN ignored)."""
    W_E, W_U = model.W_E.double(), model.W_U.double()
    L, H = model.cfg.n_layers, model.cfg.n_heads
    for layer in range(L):
        for h in range(H):
            ov = W_E @ model.W_V[layer, h].double() @ model.W_O[layer, h].double() @ W_U
            lam = torch.linalg.eigvals(ov)
            _ = lam.real.sum() / lam.abs().sum()
            if layer == 0:
                continue
            qk = W_E @ model.W_Q[layer, h].double() @ model.W_K[layer, h].double().T
            total = 0
            for k in range(layer):
                for g in range(H):
                    src = W_E @ model.W_V[k, g].double() @ model.W_O[k, g].double()
                    total = total + prev[k, g] * (qk * src).sum()  # trace(qk src^T)
    for mode in "QKV":
        model.all_composition_scores(mode)


class MaxTensorSize(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.max_numel, self.max_shape = 0, ()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, tuple | list) else (out,):
            if isinstance(t, torch.Tensor) and t.numel() > self.max_numel:
                self.max_numel, self.max_shape = t.numel(), tuple(t.shape)
        return out


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--skip-large", action="store_true", help="skip the 50k-vocabulary model")
    parser.add_argument("--skip-presets", action="store_true", help="only the 50k-vocabulary model")
    parser.add_argument("--naive-max-layers", type=int, default=2,
                        help="time the naive vocab x vocab reference up to this many layers")
    args = parser.parse_args()
    torch.manual_seed(0)

    threads = torch.get_num_threads()
    print(f"torch threads: {threads} (also timed with 1 thread: on a shared, oversubscribed "
          "machine, intra-op parallelism makes these tiny matrix products slower)")
    print(f"{'preset':<14}{'heads':>6}{'measures':>11}{'1 thread':>10}{'tensors only':>14}"
          f"{'naive':>11}{'naive/measures':>16}{'prev-token fwd':>16}")
    for name in () if args.skip_presets else PRESETS:
        spec = get_preset(name).model
        model = build_model(spec, seed=0)
        text = torch.randint(1, spec.d_vocab, (10, spec.n_ctx))
        prev = previous_token_scores(model, text)

        def tensors_only(m=model, p=prev):
            w = C.circuit_weights(m)
            C.qk_trace(w, p), C.qk_smear_trace(w), C.ov_copying(w)
            for mode in "QKV":
                C.composition_scores(w, mode)

        fast = median_time(lambda m=model, p=prev: C.circuit_scores(m, prev_scores=p),
                           args.repeats)
        bare = median_time(tensors_only, args.repeats)
        torch.set_num_threads(1)
        single = median_time(lambda m=model, p=prev: C.circuit_scores(m, prev_scores=p),
                             args.repeats)
        torch.set_num_threads(threads)
        fwd = median_time(lambda m=model, t=text: previous_token_scores(m, t), args.repeats)
        if spec.n_layers <= args.naive_max_layers:
            slow = median_time(lambda m=model, p=prev: naive_measures(m, p), 1)
            naive = f"{slow * 1e3:>9.0f}ms{slow / fast:>15.0f}x"
        else:
            naive = f"{'-':>11}{'-':>16}"
        print(f"{name:<14}{spec.n_layers * spec.n_heads:>6}{fast * 1e3:>9.1f}ms"
              f"{single * 1e3:>8.1f}ms{bare * 1e3:>12.1f}ms{naive}{fwd * 1e3:>14.1f}ms")

    if args.skip_large:
        return
    spec = ModelSpec(n_layers=2, d_model=768, n_heads=12, d_head=64, n_ctx=16, d_vocab=50257)
    model = build_model(spec, seed=0)
    prev = torch.rand(2, 12)
    before = peak_rss_mb()
    start = time.perf_counter()
    with MaxTensorSize() as guard:
        C.circuit_scores(model, prev_scores=prev)
    took = time.perf_counter() - start
    after = peak_rss_mb()
    square_gb = spec.d_vocab**2 * 4 / 1e9
    print(f"\nd_vocab {spec.d_vocab}, d_model {spec.d_model}, 24 heads: all measures {took:.2f} s; "
          f"largest tensor any op returned: {guard.max_shape} = {guard.max_numel:,} elements "
          f"(the embedding's own size; a vocab x vocab matrix has {spec.d_vocab**2:,}); "
          f"peak RSS {before:.0f} -> {after:.0f} MB (one float32 vocab x vocab matrix: "
          f"{square_gb:.1f} GB)")
    w = C.circuit_weights(model)
    parts = {"circuit_weights (2 Grams over the vocab)": lambda: C.circuit_weights(model),
             "qk_trace": lambda: C.qk_trace(w, prev),
             "ov_copying": lambda: C.ov_copying(w),
             "composition (Q, K, V)": lambda: [C.composition_scores(w, m) for m in "QKV"]}
    print(f"  {'':<42}{threads:>6} threads{1:>9} thread")
    for key, fn in parts.items():
        many = median_time(fn, 3)
        torch.set_num_threads(1)
        one = median_time(fn, 3)
        torch.set_num_threads(threads)
        print(f"  {key:<42}{many * 1e3:>11.1f} ms{one * 1e3:>11.1f} ms")


if __name__ == "__main__":
    main()
