"""Induction heads on natural text at the paper's small-model width, on one GPU.

The paper's small models (Olsson et al. 2022, "Model Details": 2 layers here, attention only,
d_model 768, 12 heads of 64) at a context of 512 tokens, trained on text that needs no
network, with a byte-level BPE of ``--d-vocab`` tokens trained on it. It reports the paper's
ICL score, the loss at token index 500 minus the loss at index 50 (Key Concepts; the paper
finds "less than 0.15 nats" before the phase change and "roughly 0.4 nats" after), and the
prefix-matching score of every head over training.

``--data``:

* ``code[:MB]`` (default ``code:150``): the first MB megabytes, in path order, of the ``.py``
  files of the Python installation running the script (its standard library and
  site-packages; files under 200 bytes or over 256 KB skipped), one document per file. The
  paper's small models never saw a token twice, and ~10% of their data was Python code; a
  corpus this size is seen about eight times in a GPU run of a few minutes. On an H200 an
  induction head formed in it after ~290M tokens (docs/natural-text.md).
* ``shakespeare``: the plays of the ``attn-only-2l-text`` preset (1.6M tokens at 8192 BPE
  tokens). At this width the model memorises them: the held-out loss rises from step ~400
  on, and no induction head formed in 477M tokens (docs/natural-text.md).
* ``files:PATH[,PATH]``: any local text (see ``DataSpec.parse``).

What is ours, not the paper's (it trains on ~10B tokens with a 2^16-token vocabulary and a
context of 8192): the corpus and its BPE (8192 tokens by default); a batch of 64 x 512
tokens; AdamW at 1e-3 (the paper's small-model rate) after 200 warm-up steps, then constant;
a wall-clock budget. Before training, the script times 10 steps of the same model on random
tokens and sets the number of steps so that training fills ``--train-seconds``, with a
checkpoint every 1/``--checkpoints`` of the run. If training runs slower than the probe
said, it stops at the first checkpoint past 1.25 x the budget; the run's checkpoints stay
complete, and ``induction_lens.train(hub.config(run), hub=..., run=..., steps=N,
resume=True)`` continues it.

Matrix products run in TF32 on the GPU (``torch.set_float32_matmul_precision("high")``;
``--no-tf32`` keeps full float32); weights and optimizer state stay float32.

After training it evaluates every checkpoint (``losses``, ``prefix_matching``,
``previous_token``) on the held-out chunks (``--eval-fraction``: 2% of the code corpus'
chunks, 10% of Shakespeare's, so that the ICL score is a mean over a few hundred examples)
and writes into ``--out``: ``frame.parquet`` (the tidy frame), ``log.csv`` (the training log),
``run.json``, ``summary.json`` (the figures the docs quote) and the figures (``icl_score``,
``loss``, ``prefix_matching_RUN``; HTML and plotly JSON). The checkpoints stay in ``--hub``.
``--replot DIR...`` redraws the figures of earlier runs, one line per run.

Run: ``python examples/natural_text_gpu.py --hub hub-gpu``; ``--tiny`` runs every code path
at laptop size on the CPU in under a minute.
"""

import argparse
import json
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from induction_lens.analysis.heads import PREFIX_MATCHING_THRESHOLD
from induction_lens.analysis.phases import detect_phase_change, phase_changes
from induction_lens.config import DataSpec, ModelSpec, RunConfig, TrainConfig
from induction_lens.constants import CACHE_DIR
from induction_lens.data import make_corpus
from induction_lens.hub import Hub
from induction_lens.measures.losses import icl_indices
from induction_lens.models.fast import fast_lm_loss
from induction_lens.models.transformer import build_model, fused_attention
from induction_lens.runs.evaluate import evaluate_run
from induction_lens.runs.settings import EvalSettings
from induction_lens.train import make_optimizer, train
from natural_text import (
    band_icl_score,
    best_prefix,
    code_corpus,
    icl_standard_error,
    round_figure,
)

CODE_MB = 150.0
"""Default size of the ``code`` corpus (megabytes of text)."""
METRICS = ("losses", "prefix_matching", "previous_token")
STOP_FACTOR = 1.25
"""Training stops at the first checkpoint past this multiple of ``--train-seconds``."""


def write_figures(frame: pd.DataFrame, out: Path) -> list[str]:
    """``icl_score``, ``loss`` (one line per run in ``frame``) and ``prefix_matching_RUN`` (every
    head of each run) as HTML and plotly JSON (values rounded, as the docs' other figures),
    shaded with the detected prefix-matching windows (the ICL score is too noisy here for a
    window of its own: see the docs). Returns the names written."""
    from induction_lens import viz

    windows = phase_changes(frame, signals=("icl_score", "prefix_matching"))
    shade = {"windows": windows, "window_signal": "prefix_matching"}
    figures = {"icl_score": viz.icl_score_curve(frame, **shade),
               "loss": viz.loss_curve(frame, **shade)}
    for run in sorted(frame["run"].unique()):
        figures[f"prefix_matching_{run}"] = viz.head_score_curves(
            frame, metric="prefix_matching", run=run, **shade)
    for name, fig in figures.items():
        fig.write_html(out / f"{name}.html", include_plotlyjs="cdn")
        round_figure(fig).write_json(str(out / f"{name}.json"))
    return list(figures)


class _OutOfTime(Exception):
    """Raised from the checkpoint callback once the wall-clock budget is spent."""


def data_spec(args: argparse.Namespace, hub: Hub) -> DataSpec:
    """``--data`` as a :class:`DataSpec` (``code[:MB]`` written into the hub's cache once)."""
    kind, _, size = args.data.partition(":")
    if kind == "code":
        try:
            megabytes = float(size) if size else CODE_MB
        except ValueError:
            megabytes = -1.0
        if megabytes <= 0:
            raise SystemExit(f"--data {args.data}: the code corpus size must be a positive "
                             "number of megabytes, e.g. code:150")
        spec = DataSpec(source="files", files=(str(code_corpus(hub.root, megabytes)),))
        fraction = 0.02
    else:
        spec, fraction = DataSpec.parse(args.data), 0.1
    return replace(spec, eval_fraction=args.eval_fraction or fraction)


def run_config(args: argparse.Namespace, steps: int, data: DataSpec) -> RunConfig:
    if args.tiny:
        model = ModelSpec(n_layers=2, d_model=64, n_heads=4, d_head=16, n_ctx=128,
                          d_vocab=args.d_vocab, attn_only=True)
    else:  # the paper's small-model width, at a context of 512
        model = ModelSpec(n_layers=2, d_model=768, n_heads=12, d_head=64, n_ctx=512,
                          d_vocab=args.d_vocab, attn_only=True)
    every = max(1, steps // args.checkpoints)
    train_cfg = TrainConfig(steps=every * args.checkpoints, batch_size=args.batch_size,
                            lr=args.lr, warmup_steps=min(args.warmup_steps, steps // 2),
                            checkpoint_every=every)
    return RunConfig(model, train_cfg, data, preset=None)


def seconds_per_step(cfg: RunConfig, device: torch.device, n: int = 10) -> float:
    """Time ``n`` training steps of ``cfg``'s model on random tokens (after 3 warm-up steps)."""
    spec, tcfg = cfg.model, cfg.train
    net = build_model(spec, seed=tcfg.seed, device=device)
    optimizer = make_optimizer(net, tcfg)
    tokens = torch.randint(spec.d_vocab, (tcfg.batch_size, spec.n_ctx), device=device)
    with fused_attention(net, tcfg.fused_attention):
        for i in range(3 + n):
            if i == 3:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
            loss = fast_lm_loss(net, tokens)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            loss.item()
    del net, optimizer
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return (time.perf_counter() - start) / n


def summarise(frame: pd.DataFrame, cfg: RunConfig, log: pd.DataFrame, run: str) -> dict:
    """The figures the docs quote, per checkpoint (loss, ICL score with its standard error and
    the band reading of ``natural_text.py``, best prefix-matching and previous-token heads)
    and for the run (first checkpoint with an induction head, detected windows)."""
    early, late = icl_indices(cfg.model.n_ctx)
    steps = sorted(int(s) for s in frame["step"].unique())
    icl = frame[frame["metric"] == "icl_score"].set_index("step")["value"]
    loss = frame[frame["metric"] == "loss"].set_index("step")["value"]
    best = best_prefix(frame).set_index("step")
    prev = frame[frame["metric"] == "previous_token"].groupby("step")["value"].max()
    hits = best[best["value"] >= PREFIX_MATCHING_THRESHOLD]
    formed = None if hits.empty else int(hits.index[0])
    window = detect_phase_change(frame, signal="icl_score", run=run)
    prefix_window = detect_phase_change(frame, signal="prefix_matching", run=run)
    per_step = [{"step": s, "tokens": int(best.loc[s, "train_tokens"]),
                 "loss": float(loss.get(s, np.nan)), "icl_score": float(icl.get(s, np.nan)),
                 "icl_standard_error": icl_standard_error(frame, s),
                 "band_icl_score": band_icl_score(frame, s, early, late),
                 "best_prefix_matching": float(best["value"].get(s, np.nan)),
                 "best_head": (f"L{int(best.loc[s, 'layer'])}H{int(best.loc[s, 'head'])}"
                               if s in best.index else None),
                 "best_previous_token": float(prev.get(s, np.nan))} for s in steps]
    return {
        "run": run, "model": cfg.model.to_dict(), "train": cfg.train.to_dict(),
        "data": cfg.data.to_dict(), "icl_indices": [early, late],
        "steps_trained": int(log["step"].max()) if len(log) else 0,
        "train_seconds": float(log["seconds"].sum()) if len(log) else 0.0,
        "induction_step": formed, "threshold": PREFIX_MATCHING_THRESHOLD,
        "icl_window": None if window is None else [window.start_step, window.end_step],
        "prefix_matching_window": (None if prefix_window is None
                                   else [prefix_window.start_step, prefix_window.end_step]),
        "checkpoints": per_step,
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hub", default="hub-gpu")
    p.add_argument("--run", default=None,
                   help="run name (default attn-only-2l-code-gpu, or -text-gpu for other data)")
    p.add_argument("--data", default=None,
                   help=f"code[:MB] (default code:{CODE_MB:g}; --tiny: code:2), shakespeare or "
                        "files:PATH[,PATH]")
    p.add_argument("--out", default="examples_out/natural_text_gpu")
    p.add_argument("--train-seconds", type=float, default=None,
                   help="wall-clock training budget (default 300; --tiny: 20 steps instead)")
    p.add_argument("--steps", type=int, default=None,
                   help="train this many steps instead of filling --train-seconds")
    p.add_argument("--checkpoints", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup-steps", type=int, default=200)
    p.add_argument("--d-vocab", type=int, default=8192)
    p.add_argument("--eval-fraction", type=float, default=None,
                   help="share of chunks held out (default 0.02 for code, else 0.1)")
    p.add_argument("--eval-examples", type=int, default=512)
    p.add_argument("--device", default=None, help="default: cuda (refused without one)")
    p.add_argument("--no-tf32", action="store_true")
    p.add_argument("--replot", nargs="+", metavar="DIR", default=None,
                   help="only draw the figures into --out from earlier runs' DIR/frame.parquet "
                        "(several DIRs: one line per run)")
    p.add_argument("--tiny", action="store_true",
                   help="laptop-size model, context 128, vocabulary 512, 20 steps: every code "
                        "path in a minute")
    args = p.parse_args(argv)
    out = Path(args.out)
    if args.replot:
        missing = [d for d in args.replot if not (Path(d) / "frame.parquet").is_file()]
        if missing:
            p.error(f"no frame.parquet in {', '.join(missing)}: pass the --out folders of "
                    "earlier runs")
        out.mkdir(parents=True, exist_ok=True)
        frame = pd.concat([pd.read_parquet(Path(d) / "frame.parquet") for d in args.replot],
                          ignore_index=True)
        print("wrote", ", ".join(write_figures(frame, out)))
        return 0
    if args.tiny:
        args.d_vocab, args.checkpoints = min(args.d_vocab, 512), min(args.checkpoints, 4)
        args.data = args.data or "code:2"
        if args.train_seconds is None and args.steps is None:
            args.steps = 20
    args.data = args.data or f"code:{CODE_MB:g}"
    args.run = args.run or ("attn-only-2l-code-gpu" if args.data.startswith("code")
                            else "attn-only-2l-text-gpu")
    args.train_seconds = 300.0 if args.train_seconds is None else args.train_seconds
    if args.checkpoints < 1 or args.train_seconds <= 0 or (args.steps is not None
                                                           and args.steps < 1):
        p.error("--checkpoints and --steps must be >= 1 and --train-seconds > 0")
    device = torch.device(args.device or "cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error("no CUDA device: this run is sized for a GPU; pass --tiny --device cpu to "
                "exercise it on a CPU")
    if not args.no_tf32:
        torch.set_float32_matmul_precision("high")
    out.mkdir(parents=True, exist_ok=True)
    hub = Hub(args.hub)
    data = data_spec(args, hub)
    t0 = time.perf_counter()
    probe = run_config(args, 1000, data)  # the model; the steps are set below
    # The corpus is cached before the clock starts; train() then reads the cache.
    make_corpus(data, d_vocab=probe.model.d_vocab, n_ctx=probe.model.n_ctx,
                cache_dir=hub.root / CACHE_DIR)
    print(f"corpus ready in {time.perf_counter() - t0:.0f} s", flush=True)

    if args.steps is None:
        per_step = seconds_per_step(probe, device)
        steps = max(args.checkpoints, int(args.train_seconds / per_step))
        print(f"probe: {per_step * 1000:.1f} ms/step -> {steps} steps", flush=True)
    else:
        steps = args.steps
    cfg = run_config(args, steps, data)
    deadline = time.perf_counter() + STOP_FACTOR * args.train_seconds

    def stop_when_late(step: int, tokens: int, model) -> None:
        if step > 0 and not args.steps and time.perf_counter() > deadline:
            raise _OutOfTime(step)

    t0 = time.perf_counter()
    try:
        train(cfg, hub=hub, run=args.run, device=device, progress=False,
              on_checkpoint=stop_when_late)
    except _OutOfTime as stop:
        print(f"stopped at step {stop.args[0]}: past {STOP_FACTOR} x --train-seconds",
              flush=True)
    print(f"trained in {time.perf_counter() - t0:.0f} s", flush=True)
    log = hub.log(args.run)
    log.to_csv(out / "log.csv", index=False)
    shutil.copyfile(hub.run_dir(args.run) / "run.json", out / "run.json")

    t0 = time.perf_counter()
    n_eval = hub.corpus(args.run).n_eval
    settings = EvalSettings(n_examples=min(args.eval_examples, n_eval),
                            head_examples=min(EvalSettings().head_examples, n_eval))
    frame = evaluate_run(hub, args.run, metrics=list(METRICS), settings=settings, device=device,
                         progress=False)
    frame.to_parquet(out / "frame.parquet", index=False)
    print(f"evaluated {frame['step'].nunique()} checkpoints in "
          f"{time.perf_counter() - t0:.0f} s", flush=True)
    summary = summarise(frame, hub.config(args.run), log, args.run)
    summary["eval_examples"] = settings.n_examples
    (out / "summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    write_figures(frame, out)
    for row in summary["checkpoints"]:
        print(f"step {row['step']:6d}  loss {row['loss']:.3f}  icl {row['icl_score']:+.3f}  "
              f"prefix {row['best_prefix_matching']:.3f} ({row['best_head']})  "
              f"prev {row['best_previous_token']:.3f}")
    print(f"induction step: {summary['induction_step']}, ICL window: {summary['icl_window']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
