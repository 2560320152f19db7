"""Head ablations: the plain TransformerLens loop vs induction_lens's fast path, in one run.

For every head of the laptop ``attn-only-4l`` preset, on examples of the evaluation set, times

* **reference**: the plain idiom, one ``run_with_hooks`` per head (``hook_z`` zeroed, full
  logits, per-token loss); for the pattern-preserving kind, one extra recording run whose
  patterns every ablated run forces back (the reference of ``tests/test_ablations.py``);
* **fast**: :func:`induction_lens.measures.ablations.ablation_metrics`, i.e. everything the
  Model Analysis Table reports (ICL-score change, before-and-after projection, random-token
  change, and the context-index average over the first 10% of the examples, the default
  ``DEFAULT_CONTEXT_FRACTION``);
* **floor**: only the final LayerNorm, unembedding and log-softmax at the positions those
  reports read, once per head (what no exact method can skip);
* **every index**: :func:`~induction_lens.measures.ablations.ablate` at every context index
  (the per-token losses of the whole set), for comparison.

Repetitions are interleaved and medians reported, so the ratios hold even on a shared,
noisy machine (absolute seconds do not). Weights are random: the cost does not depend on them.

Threads: by default torch runs on one thread here. On a 2-core machine shared with other
busy processes, torch's two-thread parallel regions stall whenever a core is taken (their
barriers wait for the descheduled thread), so with 2 threads a run's time depends mostly on
how many small operations it launches and on the neighbours' load: repeated timings of the same
job varied 3-10x in our runs. One thread measures the work; pass ``--threads 2`` on an idle
machine.

    python benchmarks/bench_ablation.py [--examples 128] [--repeats 3] [--threads 1]
"""

import argparse
import math
import statistics
import time
from functools import partial

import torch
import torch.nn.functional as F

from induction_lens.data import SyntheticCorpus
from induction_lens.measures import ablations as A
from induction_lens.models import build_model
from induction_lens.presets import get_preset


def _zero_head(z, hook, head):
    z = z.clone()
    z[:, :, head] = 0.0
    return z


@torch.no_grad()
def reference(model, tokens, kind, batch_size):
    """Plain TransformerLens: one run_with_hooks per head and batch, every per-token loss."""
    out = []
    for start in range(0, tokens.shape[0], batch_size):
        chunk = tokens[start:start + batch_size]
        clean = model(chunk, return_type="loss", loss_per_token=True)
        forced = []
        if kind == "pattern":
            _, cache = model.run_with_cache(chunk,
                                            names_filter=lambda n: n.endswith("hook_pattern"))
            forced = [(n, partial(lambda p, hook, rec: rec, rec=cache[n])) for n in cache]
        deltas = []
        for layer in range(model.cfg.n_layers):
            for head in range(model.cfg.n_heads):
                hooks = [(f"blocks.{layer}.attn.hook_z", partial(_zero_head, head=head))]
                ablated = model.run_with_hooks(chunk, return_type="loss", loss_per_token=True,
                                               fwd_hooks=hooks + forced)
                deltas.append(ablated - clean)
        out.append(torch.stack(deltas))
    return torch.cat(out, dim=1)


@torch.inference_mode()
def floor(model, resid, targets_sparse, resid_dense, targets_dense, n_heads):
    """Final LayerNorm + unembedding + log-softmax at the reported positions, for every head."""
    for _ in range(n_heads):
        for r, t in ((resid, targets_sparse), (resid_dense, targets_dense)):
            logits = model.unembed(model.ln_final(r))
            F.cross_entropy(logits.transpose(1, 2), t, reduction="none")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--kinds", nargs="+", default=["pattern", "full"],
                        choices=["pattern", "full"])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    cfg = get_preset("attn-only-4l")
    model = build_model(cfg.model, seed=0)
    model.eval()
    n, n_ctx = args.examples, cfg.model.n_ctx
    tokens = SyntheticCorpus(cfg.data, d_vocab=cfg.model.d_vocab, n_ctx=n_ctx).eval_tokens(n)
    n_heads = cfg.model.n_layers * cfg.model.n_heads
    before_after = torch.randn(n, dtype=torch.float64)  # any unit vector costs the same
    context_examples = math.ceil(A.DEFAULT_CONTEXT_FRACTION * n)
    d = cfg.model.d_model
    sparse_n = n - context_examples
    resid = torch.randn(sparse_n, 3, d)
    targets_sparse = torch.randint(0, cfg.model.d_vocab, (sparse_n, 3))
    resid_dense = torch.randn(context_examples, n_ctx - 1, d)
    targets_dense = torch.randint(0, cfg.model.d_vocab, (context_examples, n_ctx - 1))

    print(f"laptop attn-only-4l ({n_heads} heads, d_model {d}, n_ctx {n_ctx}), {n} evaluation "
          f"examples, batch {args.batch_size}, {args.repeats} interleaved repeats, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"reports read 3 context indices per example + every index of the first "
          f"{context_examples} examples (context-index average)")
    for kind in args.kinds:
        jobs = {
            "reference": lambda kind=kind: reference(model, tokens, kind, args.batch_size),
            "fast": lambda kind=kind: A.ablation_metrics(model, tokens, kind,
                                                         before_after=before_after,
                                                         batch_size=args.batch_size),
            "floor": lambda: floor(model, resid, targets_sparse, resid_dense, targets_dense,
                                   n_heads),
            "every index": lambda kind=kind: A.ablate(model, tokens, kind,
                                                      batch_size=args.batch_size),
        }
        times: dict[str, list[float]] = {name: [] for name in jobs}
        results = {}
        for _ in range(args.repeats):
            for name, job in jobs.items():
                t0 = time.perf_counter()
                results[name] = job()
                times[name].append(time.perf_counter() - t0)
        med = {name: statistics.median(ts) for name, ts in times.items()}
        spread = ", ".join(f"{name} {min(ts):.2f}-{max(ts):.2f}" for name, ts in times.items())
        diff = float((results["every index"].delta - results["reference"]).abs().max())
        print(f"\n[{kind}] max |every-index fast - reference| = {diff:.2e} nats")
        ref, fast, flo, dense = (med[k] for k in ("reference", "fast", "floor", "every index"))
        print(f"  reference    {ref:8.3f} s")
        print(f"  fast         {fast:8.3f} s   reference/fast  {ref / fast:6.1f}x")
        print(f"  floor        {flo:8.3f} s   fast/floor      {fast / flo:6.1f}x   "
              f"reference/floor {ref / flo:6.1f}x")
        print(f"  every index  {dense:8.3f} s   reference/every-index {ref / dense:6.1f}x")
        print(f"  (min-max s over repeats: {spread})")


if __name__ == "__main__":
    main()
