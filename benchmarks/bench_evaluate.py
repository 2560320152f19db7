"""Seconds per checkpoint of every measurement of issue 3, on the laptop ``attn-only-2l``.

Usage::

    python benchmarks/bench_evaluate.py                     # a freshly initialised model
    python benchmarks/bench_evaluate.py --hub hub --run attn-only-2l --step 800

The cost of a forward pass does not depend on the weights, so a fresh model times the same as
a trained checkpoint; ``--hub`` also times loading the checkpoint. Each line prints the best
of ``--repeats`` runs as wall-clock seconds and CPU seconds (all threads; on a shared machine
CPU time is the steadier of the two), and where there is a plain reference implementation the
two are timed side by side in the same run and their ratio printed. Compare ratios, not
absolute times across runs.
"""

import argparse
import time
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch

from induction_lens.analysis.losses import per_token_loss_pca
from induction_lens.analysis.phases import SIGNAL_PARAMS, fit_window
from induction_lens.data import evaluator_token_pool, make_corpus, repeated_tokens
from induction_lens.hub import Hub
from induction_lens.measures.heads import (
    copying_scores,
    prefix_matching_scores,
    previous_token_scores,
    repeated_head_scores,
)
from induction_lens.measures.losses import summarise_losses
from induction_lens.models import build_model
from induction_lens.presets import get_preset
from induction_lens.runs.evaluate import EvalSettings, evaluate_model


def measure(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, tuple[float, float]]:
    """Best wall-clock and CPU seconds of each function over ``repeats`` rounds.

    One warm-up call each, then the functions take turns within every round, so that a burst
    of load from other processes hits all of them alike (this machine is shared).
    """
    for fn in fns.values():
        fn()
    best = {name: (float("inf"), float("inf")) for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            w0, c0 = time.perf_counter(), time.process_time()
            fn()
            wall, cpu = time.perf_counter() - w0, time.process_time() - c0
            best[name] = (min(best[name][0], wall), min(best[name][1], cpu))
    return best


def line(name: str, timing: tuple[float, float], reference: tuple[float, float] | None = None
         ) -> None:
    text = f"{name:<64} {timing[0]:7.3f} s wall {timing[1]:7.3f} s cpu"
    if reference is not None:
        text += (f" | reference {reference[0]:7.3f} s wall {reference[1]:7.3f} s cpu"
                 f" (x{reference[1] / timing[1]:.2f} cpu)")
    print(text)


# Plain references (the same ones the tests compare against).
def ref_losses(model, tokens, batch_size=64):
    sums, per_example = torch.zeros(tokens.shape[1] - 1, dtype=torch.float64), []
    with torch.no_grad():
        for s in range(0, tokens.shape[0], batch_size):
            chunk = tokens[s:s + batch_size]
            logp = model(chunk).log_softmax(-1)
            losses = -logp[:, :-1].gather(-1, chunk[:, 1:, None])[..., 0]
            sums += losses.double().sum(0)
            per_example.append(losses)
    return sums, per_example


def ref_patterns(model, tokens):
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens)
    return [cache["pattern", layer] for layer in range(model.cfg.n_layers)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hub", help="hub holding a trained laptop attn-only-2l run")
    parser.add_argument("--run", default="attn-only-2l")
    parser.add_argument("--step", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n-examples", type=int, default=EvalSettings().n_examples)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    settings = EvalSettings(n_examples=args.n_examples)

    cfg = get_preset("attn-only-2l")
    if args.hub:
        hub = Hub(args.hub)
        line("load checkpoint (verified sha256)",
             measure({"load": lambda: hub.load_model(args.run, args.step)}, args.repeats)["load"])
        model = hub.load_model(args.run, args.step)
        corpus = hub.corpus(args.run)
        freqs = hub.token_frequencies(args.run)
    else:
        model = build_model(cfg.model, seed=0)
        corpus = make_corpus(cfg.data, d_vocab=cfg.model.d_vocab, n_ctx=cfg.model.n_ctx)
        freqs = corpus.token_frequencies()
    model.eval()
    tokens = corpus.eval_tokens(settings.n_examples)
    pool = evaluator_token_pool(freqs, model.cfg.d_vocab)
    rep = repeated_tokens(pool)
    data = tokens[:10]
    print(f"model: laptop attn-only-2l ({model.cfg.n_layers} layers, d_model {model.cfg.d_model},"
          f" ctx {model.cfg.n_ctx}, vocab {model.cfg.d_vocab}); eval set {tuple(tokens.shape)};"
          f" torch threads {torch.get_num_threads()}")

    rng = np.random.default_rng(0)
    steps = np.arange(0, 10_001, 50, dtype=np.float64)
    curve = -0.4 / (1 + np.exp(-(steps - 3000) / 100)) + rng.normal(0, 0.02, len(steps))
    snapshots = pd.DataFrame([{"run": r, "step": s, "train_tokens": s, "metric": "loss_per_example",
                               "example": k, "value": v}
                              for r in ("a", "b") for s in range(17)
                              for k, v in enumerate(rng.normal(size=settings.n_examples))])
    t = measure({
        "all": lambda: evaluate_model(model, eval_tokens=tokens, token_frequencies=freqs,
                                      settings=settings),
        "losses": lambda: summarise_losses(model, tokens),
        "losses_ref": lambda: ref_losses(model, tokens),
        "losses_fast": lambda: summarise_losses(model, tokens, context_average=False),
        "shared": lambda: repeated_head_scores(model, rep, seq_len=25),
        "separate": lambda: (prefix_matching_scores(model, rep),
                             copying_scores(model, rep[:, :26])),
        "patterns_ref": lambda: ref_patterns(model, rep),
        "prev": lambda: previous_token_scores(model, data),
        "prev_ref": lambda: ref_patterns(model, data),
        "window": lambda: fit_window(steps, curve, SIGNAL_PARAMS["icl_score"]),
        "pca": lambda: per_token_loss_pca(snapshots),
    }, args.repeats)
    line("ALL built-in metrics for one checkpoint (evaluate_model)", t["all"])
    line("per-token losses: both summaries + ICL score", t["losses"], t["losses_ref"])
    line("random-token vector + ICL only (unembed 3 positions/example)", t["losses_fast"],
         t["losses"])
    line("prefix matching + copying, one shared forward", t["shared"], t["separate"])
    line("  (patterns of that input via run_with_cache, no scoring)", t["patterns_ref"])
    line("previous token (hooks reduce each pattern)", t["prev"], t["prev_ref"])
    line("phase window of a 201-checkpoint curve (paper's snapshot count)", t["window"])
    line(f"PCA of 2 runs x 17 snapshots x {settings.n_examples} examples", t["pca"])


if __name__ == "__main__":
    main()
