"""Training loop that writes snapshots into the local hub.

AdamW with linear warm-up, an optional cosine decay and an optional weight-decay schedule,
gradient clipping, and checkpoints on a linear ("every N steps", the paper's small models) or
log ("2^k steps", the paper's full-scale models) schedule, always including step 0 (the
initialisation) and the last step.

Determinism: weights are initialised from ``TrainConfig.seed`` and batch ``s`` is a pure
function of the data seed and ``s``, so the same configs give the same run, and a run resumed
from its last complete checkpoint (weights + optimizer state, both stored exactly) ends
bit-identical on CPU to one that was never interrupted.

Speed: whenever nothing is hooked and the fused paths are on (``TrainConfig.fused_attention``),
a step runs :func:`~induction_lens.models.fast.fast_lm_loss`, a plain-torch forward over the
model's own parameters (one QKV matrix product, ``scaled_dot_product_attention``, one-kernel
LayerNorm, the unembedding fused with the cross-entropy and its gradient); an intervention
or any other hook sends the step through the ``HookedTransformer`` (its fused attention and
LayerNorm where unhooked). The optimizer is
torch's fused AdamW on CPU and CUDA. ``benchmarks/bench_train.py`` compares the result with
``transformer_lens.train.train`` on the same batches.
"""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from induction_lens import constants as C
from induction_lens.config import ConfigError, DataSpec, ModelSpec, RunConfig, TrainConfig
from induction_lens.data import make_corpus
from induction_lens.errors import HubError
from induction_lens.hub import Hub, RunWriter, empty_log
from induction_lens.models import build_model, fused_attention
from induction_lens.models.fast import fast_forward_ok, fast_lm_loss
from induction_lens.models.interventions import InterventionHooks, check_interventions
from induction_lens.presets import Scale, get_preset

logger = logging.getLogger(__name__)

CheckpointCallback = Callable[[int, int, HookedTransformer], None]
"""Called as ``callback(step, tokens, model)`` after each checkpoint is written."""


@dataclass
class TrainResult:
    """What :func:`train` returns."""

    hub: Hub
    run: str
    model: HookedTransformer
    """The model at the last step (in eval mode)."""
    log: pd.DataFrame
    """The training log (``step, tokens, loss, lr, grad_norm, seconds``)."""


def lm_loss(logits: Float[Tensor, "batch pos d_vocab"],
            tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, ""]:
    """Mean next-token cross-entropy (nats), the same value as TransformerLens's ``loss``."""
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), tokens[:, 1:].flatten())


_FUSED_ADAMW = ("cpu", "cuda")
"""Devices where :func:`make_optimizer` uses torch's fused (one kernel per step) AdamW."""


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on weight matrices (``W_*``) only.

    Biases, LayerNorm gains and smeared-key alphas are not decayed (decaying alpha would pull
    every head towards an even key mix). Group 0 is decayed, group 1 is not. Frozen parameters
    (``requires_grad`` False, such as the key biases) are left out.

    On CPU and CUDA the optimizer is torch's fused AdamW: the same update rule as the default
    per-parameter loop, in one kernel per step instead of about ten small operations per
    parameter tensor (the loop costs about as much as a whole forward pass at laptop scale
    under CPU contention). Its rounding differs from the loop's in the last bits, so a run
    stays bit-identical to itself and to its resumption, not to a run of an older version.
    An old run resumed keeps the implementation stored in its optimizer state.
    """
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (decay if name.rsplit(".", 1)[-1].startswith("W_") else no_decay).append(param)
    device = next(model.parameters()).device
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr, betas=cfg.betas, fused=True if device.type in _FUSED_ADAMW else None)


def _check_fits(cfg: RunConfig) -> None:
    data, model = cfg.data, cfg.model
    if cfg.train.optimizer != "adamw":
        raise ConfigError(f"TrainConfig.optimizer={cfg.train.optimizer!r} is only supported for "
                          "Reddy runs; language models train with 'adamw'")
    if data.is_synthetic and data.max_segment >= model.n_ctx:
        raise ConfigError(
            f"ModelSpec.n_ctx={model.n_ctx} is too short for DataSpec.max_segment="
            f"{data.max_segment}: no segment could be copied; raise n_ctx or lower max_segment"
        )
    check_interventions(cfg.train.interventions, n_layers=model.n_layers, n_heads=model.n_heads)


def resolve_config(model: ModelSpec | RunConfig | str, *, train: TrainConfig | None = None,
                   data: DataSpec | str | None = None, steps: int | None = None,
                   scale: Scale = "laptop") -> RunConfig:
    """Combine a preset name / spec with optional overrides into a :class:`RunConfig`."""
    if isinstance(model, str):
        cfg = get_preset(model, scale)
    elif isinstance(model, RunConfig):
        cfg = model
    elif isinstance(model, ModelSpec):
        if train is None:
            raise ConfigError("train=TrainConfig(...) is required when passing a ModelSpec "
                              "(or pass a preset name)")
        cfg = RunConfig(model, train)
    else:
        raise ConfigError(f"model={model!r} must be a preset name, ModelSpec or RunConfig")
    if train is not None:
        cfg = replace(cfg, train=train)
    if isinstance(data, str):
        data = DataSpec.parse(data)
    if data is not None:
        cfg = replace(cfg, data=data)
    if steps is not None:
        cfg = replace(cfg, train=replace(cfg.train, steps=steps))
    _check_fits(cfg)
    return cfg


StepLoss = Callable[[int], tuple[Tensor, dict[str, float]]]
"""``step_loss(step) -> (loss, extra log columns)``: one training step's forward pass."""


def run_steps(writer: RunWriter, net: torch.nn.Module, optimizer: torch.optim.Optimizer,
              tcfg: TrainConfig, *, step_loss: StepLoss, tokens_per_step: int,
              hooks: InterventionHooks | None = None, progress: bool = True,
              on_checkpoint: CheckpointCallback | None = None) -> pd.DataFrame:
    """The training loop every trainer of the package shares (language models, Reddy 2023).

    Resumes from the run's last complete checkpoint (weights and optimizer state, refused with
    a :class:`HubError` when they do not fit) or writes the step-0 checkpoint; then for each
    step sets the scheduled learning rate and weight decay, backpropagates ``step_loss``,
    clips, steps, logs ``step, tokens, loss, lr, grad_norm, seconds`` (plus the step's extra
    columns) and writes the checkpoints of ``tcfg.checkpoint_steps()``. ``hooks`` (declared
    interventions) are told after backward and after each optimizer step.

    Returns:
        The run's whole training log.
    """
    hub, run = writer.hub, writer.run
    start = writer.last_step
    if start is not None:
        weights = hub.load_state_dict(run, start)
        optim_state = hub.load_optimizer_state(run, start)
        try:
            net.load_state_dict(weights)
            optimizer.load_state_dict(optim_state)
        except (ValueError, KeyError, RuntimeError, TypeError) as err:
            raise HubError(f"checkpoint {start} of run {run!r} does not fit its model and "
                           f"optimizer ({str(err).strip().splitlines()[0]}); restore it or "
                           "start a new --run") from None
        log = hub.log(run)
        log = log[log["step"] <= start].reset_index(drop=True)
        logger.info("resuming run %s from step %d", run, start)
    else:
        start, log = 0, empty_log()
        writer.save_checkpoint(0, 0, net, optimizer.state_dict(), log)
        if on_checkpoint is not None:
            on_checkpoint(0, 0, net)

    ckpt_steps = set(tcfg.checkpoint_steps())
    params = [p for p in net.parameters() if p.requires_grad]
    rows: list[dict] = []
    net.train()
    bar = tqdm(total=tcfg.steps, initial=min(start, tcfg.steps), disable=not progress,
               desc=run, unit="step", dynamic_ncols=True)
    for step in range(start, tcfg.steps):
        t0 = time.perf_counter()
        lr, wd = tcfg.lr_at(step), tcfg.weight_decay_at(step)
        for i, group in enumerate(optimizer.param_groups):
            group["lr"] = lr
            group["weight_decay"] = wd if i == 0 else 0.0
        loss, extra = step_loss(step)
        loss.backward()
        if hooks is not None:
            hooks.after_backward()
        grad_norm = (torch.nn.utils.clip_grad_norm_(params, tcfg.grad_clip)
                     if tcfg.grad_clip is not None else torch.tensor(float("nan")))
        optimizer.step()
        if hooks is not None:
            hooks.after_step()
        optimizer.zero_grad(set_to_none=True)
        done = step + 1
        rows.append({"step": done, "tokens": done * tokens_per_step, "loss": loss.item(),
                     **extra, "lr": lr, "grad_norm": float(grad_norm),
                     "seconds": time.perf_counter() - t0})
        bar.update(1)
        bar.set_postfix(loss=f"{rows[-1]['loss']:.3f}", refresh=False)
        if done in ckpt_steps:
            new = pd.DataFrame(rows)
            log = pd.concat([log, new], ignore_index=True) if len(log) else new
            rows = []
            writer.save_checkpoint(done, done * tokens_per_step, net, optimizer.state_dict(),
                                   log)
            if on_checkpoint is not None:
                on_checkpoint(done, done * tokens_per_step, net)
    bar.close()
    return log


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def train(model: ModelSpec | RunConfig | str, *, hub: Hub | str | Path, run: str,
          train: TrainConfig | None = None, data: DataSpec | str | None = None,
          steps: int | None = None, scale: Scale = "laptop", resume: bool = False,
          device: str | torch.device | None = None, progress: bool = True,
          on_checkpoint: CheckpointCallback | None = None) -> TrainResult:
    """Train a model and write its snapshots into ``hub/run``.

    Args:
        model: a preset name (e.g. "attn-only-2l"), a :class:`ModelSpec` (then ``train`` is
            required) or a full :class:`RunConfig`.
        hub: the hub (or its directory).
        run: the run's name inside the hub.
        train: training config overriding the preset's.
        data: data spec or CLI string ("synthetic", "shakespeare", "hf:NAME", ...).
        steps: override the number of steps.
        scale: preset scale, "laptop" or "paper".
        resume: continue an existing run from its last complete checkpoint (only ``steps``
            may differ from the stored config, and not under a cosine schedule, whose decay
            spans the stored steps: that is refused with a :class:`HubError`). Natural-text
            runs reuse their stored tokenizer. A run that does not exist yet is created.
        device: torch device (default: CUDA if available, else CPU; pass "cpu" where runs
            must be bit-identical, e.g. for resume checks).
        progress: show a tqdm progress bar.
        on_checkpoint: ``callback(step, tokens, model)`` after each checkpoint.

    Returns:
        A :class:`TrainResult` with the final model and the training log.
    """
    from induction_lens.train_reddy import is_reddy_request, train_reddy

    if is_reddy_request(model, scale):  # Reddy 2023's classifier: its own loop
        return train_reddy(model, hub=hub, run=run, train=train, data=data,  # type: ignore
                           steps=steps, scale=scale, resume=resume, device=device,
                           progress=progress, on_checkpoint=on_checkpoint)
    cfg = resolve_config(model, train=train, data=data, steps=steps, scale=scale)
    hub = Hub.of(hub)
    device = torch.device(device) if device is not None else default_device()
    tcfg, spec = cfg.train, cfg.model
    tokens_per_step = tcfg.batch_size * spec.n_ctx

    # The corpus is built before the run is opened, so that a data source that fails (offline,
    # missing file) leaves no half-created run behind. A resumed run reuses its stored
    # tokenizer (verified first), so its batches are the ones it was trained on.
    tok_path = hub.run_dir(run) / C.TOKENIZER
    reuse_tokenizer = resume and run in hub.runs() and hub.has_file(run, C.TOKENIZER)
    if reuse_tokenizer:
        hub.read_file(run, C.TOKENIZER)
    corpus = make_corpus(cfg.data, d_vocab=spec.d_vocab, n_ctx=spec.n_ctx,
                         cache_dir=hub.root / C.CACHE_DIR,
                         tokenizer_path=tok_path if reuse_tokenizer else None)
    with hub.open_run(run, cfg, resume=resume) as writer:
        if corpus.tokenizer is not None and (writer.created or not hub.has_file(run, C.TOKENIZER)):
            writer.write_file(C.TOKENIZER, corpus.tokenizer.to_str().encode())
        writer.save_token_frequencies(corpus.token_frequencies())

        net = build_model(spec, seed=tcfg.seed, device=device)
        optimizer = make_optimizer(net, tcfg)

        def step_loss(step: int) -> tuple[Tensor, dict[str, float]]:
            tokens = corpus.batch(step, tcfg.batch_size).to(device)
            hooks.before_forward(step)
            if fast_forward_ok(net):  # nothing hooked, fused paths on: plain-torch forward
                return fast_lm_loss(net, tokens), {}
            return lm_loss(net(tokens), tokens), {}

        # Declared interventions (TrainConfig.interventions) hook in from their start step on;
        # a hooked pattern takes TransformerLens's path, the rest stays fused.
        with fused_attention(net, tcfg.fused_attention), \
                InterventionHooks(net, tcfg.interventions) as hooks:
            log = run_steps(writer, net, optimizer, tcfg, step_loss=step_loss,
                            tokens_per_step=tokens_per_step, hooks=hooks, progress=progress,
                            on_checkpoint=on_checkpoint)
    net.eval()
    return TrainResult(hub=hub, run=run, model=net, log=log)
