"""Training loop of Reddy 2023's in-context classifier, writing snapshots into the local hub.

G. Reddy, *The mechanistic basis of data dependence and abrupt learning in an in-context
classification task*, ICLR 2024 (arXiv 2312.03002): the network is trained with plain SGD
(learning rate 0.01, batch 128) on fresh sequences every step. :func:`train_reddy` does that
with the project's machinery: the run is opened with :meth:`~induction_lens.hub.Hub.open_run`,
checkpoints follow :meth:`~induction_lens.config.TrainConfig.checkpoint_steps` and are written
by :meth:`~induction_lens.hub.RunWriter.save_checkpoint` (safetensors, sha256 manifest, the
newest optimizer state kept), so :meth:`~induction_lens.hub.Hub.load_model` and every hub tool
work on it. :func:`induction_lens.train.train` dispatches here for a Reddy config.

Optimiser: ``TrainConfig.optimizer`` "sgd" (plain SGD, no momentum: the paper's) or "adamw"
(with ``betas``); weight decay on the weight matrices only (Q, K, V and the classifier's
weights), never on biases; the learning rate follows ``TrainConfig.lr_at`` (warm-up, schedule)
and the gradient is clipped when ``grad_clip`` is set. Loss: cross-entropy (nats) of the
query's label.

Determinism: the weights come from ``TrainConfig.seed``, batch ``s`` is a pure function of the
task and ``s`` (:func:`~induction_lens.data.reddy.train_batch`), so a run resumed from its last
checkpoint (weights and optimizer state stored exactly) ends bit-identical on CPU to one never
interrupted. The log's ``tokens`` column counts training tokens, ``step * batch * (2N + 1)``.
"""

import logging
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

from induction_lens.config import DataSpec, ReddyTaskSpec, RunConfig, TrainConfig
from induction_lens.data.reddy import eval_set, make_world, train_batch
from induction_lens.errors import ConfigError
from induction_lens.hub import Hub
from induction_lens.models.reddy import (
    InductionHeadModel,
    ReddyNetwork,
    build_reddy_network,
    descend,
)
from induction_lens.presets import Scale, get_preset
from induction_lens.train import CheckpointCallback, TrainResult, default_device, run_steps

logger = logging.getLogger(__name__)

__all__ = ["is_reddy_request", "make_reddy_optimizer", "resolve_reddy_config", "train_reddy",
           "induction_head_sweep"]


def is_reddy_request(model: object, scale: Scale = "laptop") -> bool:
    """True when ``model`` (a preset name or a :class:`RunConfig`) is a Reddy run."""
    if isinstance(model, RunConfig):
        return model.is_reddy
    if isinstance(model, str):
        return get_preset(model, scale).is_reddy
    return False


def resolve_reddy_config(model: RunConfig | str, *, train: TrainConfig | None = None,
                         data: ReddyTaskSpec | DataSpec | str | None = None,
                         steps: int | None = None, scale: Scale = "laptop") -> RunConfig:
    """A Reddy preset name or config with optional overrides.

    ``data`` may be a :class:`ReddyTaskSpec` (replaces the task), or the language-model default
    (``"synthetic"`` / ``DataSpec()``, what the command line always passes), of which only the
    seed is taken; any other data source is an error, as the task defines the sequences.
    """
    cfg = get_preset(model, scale) if isinstance(model, str) else model
    if not isinstance(cfg, RunConfig) or not cfg.is_reddy:
        raise ConfigError(f"model={model!r} is not a Reddy preset or config; use e.g. "
                          "'reddy-icl' (see `induction-lens presets`)")
    if isinstance(data, str):
        data = DataSpec.parse(data)
    if isinstance(data, DataSpec):
        if data.source != "synthetic" or data.distribution != "uniform":
            raise ConfigError(f"data source {data.source!r} does not apply to a Reddy run (its "
                              "task generates the sequences); pass a ReddyTaskSpec or leave "
                              "--data at its default")
        data = replace(cfg.data, seed=data.seed)
    if data is not None:
        cfg = replace(cfg, data=data)
    if train is not None:
        cfg = replace(cfg, train=train)
    if steps is not None:
        cfg = replace(cfg, train=replace(cfg.train, steps=steps))
    return cfg


def make_reddy_optimizer(net: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD or AdamW (``cfg.optimizer``); group 0 (weight matrices) is decayed, group 1 is not."""
    decay, no_decay = [], []
    for param in net.parameters():
        if param.requires_grad:
            (decay if param.ndim >= 2 else no_decay).append(param)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)


def train_reddy(model: RunConfig | str, *, hub: Hub | str | Path, run: str,
                train: TrainConfig | None = None,
                data: ReddyTaskSpec | DataSpec | str | None = None, steps: int | None = None,
                scale: Scale = "laptop", resume: bool = False,
                device: str | torch.device | None = None, progress: bool = True,
                on_checkpoint: CheckpointCallback | None = None) -> TrainResult:
    """Train Reddy's network on its task and write the snapshots into ``hub/run``.

    Arguments as :func:`induction_lens.train.train` (which calls this for Reddy configs).

    Returns:
        A :class:`~induction_lens.train.TrainResult` whose model is the
        :class:`~induction_lens.models.reddy.ReddyNetwork` at the last step (eval mode) and
        whose log has ``step, tokens, loss, accuracy, lr, grad_norm, seconds``.
    """
    cfg = resolve_reddy_config(model, train=train, data=data, steps=steps, scale=scale)
    hub = Hub.of(hub)
    device = torch.device(device) if device is not None else default_device()
    tcfg, task = cfg.train, cfg.data
    tokens_per_step = tcfg.batch_size * task.seq_len
    world = make_world(task)
    with hub.open_run(run, cfg, resume=resume) as writer:
        net: ReddyNetwork = build_reddy_network(cfg.model, seed=tcfg.seed, device=device)
        optimizer = make_reddy_optimizer(net, tcfg)

        def step_loss(step: int) -> tuple[torch.Tensor, dict[str, float]]:
            batch = train_batch(task, world, step, tcfg.batch_size).to(device)
            logits = net(batch.inputs)
            accuracy = (logits.argmax(-1) == batch.targets).float().mean().item()
            return F.cross_entropy(logits, batch.targets), {"accuracy": accuracy}

        log = run_steps(writer, net, optimizer, tcfg, step_loss=step_loss,
                        tokens_per_step=tokens_per_step, progress=progress,
                        on_checkpoint=on_checkpoint)
    net.eval()
    return TrainResult(hub=hub, run=run, model=net, log=log)


def induction_head_sweep(task: ReddyTaskSpec, inits: list[tuple[float, float, float]], *,
                         learn_beta1: bool = True, steps: int = 2000, lr: float = 0.1,
                         batch_size: int = 128, n_eval: int = 1000, record_every: int = 100
                         ) -> pd.DataFrame:
    """Train :class:`~induction_lens.models.reddy.InductionHeadModel` from each initial
    ``(beta1, alpha, xi)`` with plain SGD on ``task``'s training batches (the same batches for
    every start) and record it.

    Returns one row per start and recorded step: ``beta1_0, alpha_0, xi_0, step, loss,
    ic_accuracy, beta1, alpha, xi`` (IC accuracy on ``n_eval`` sequences of the IC set).
    """
    if not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"steps={steps!r} must be a positive integer")
    if not inits:
        raise ConfigError("inits is empty; pass at least one (beta1, alpha, xi)")
    world = make_world(task)
    ic = eval_set(task, world, "ic", n_eval)
    ic_content = ic.inputs[..., task.n_pos:]
    rows = []
    for b0, a0, x0 in inits:
        model = InductionHeadModel(world.labels, beta1=b0, alpha=a0, xi=x0,
                                   learn_beta1=learn_beta1)

        def loss_at(step: int, model: InductionHeadModel = model) -> torch.Tensor:
            batch = train_batch(task, world, step, batch_size)
            return F.cross_entropy(model(batch.inputs[..., task.n_pos:]), batch.targets)

        def record(step: int, loss: torch.Tensor, model: InductionHeadModel = model,
                   init: tuple[float, float, float] = (b0, a0, x0)) -> dict:
            with torch.no_grad():
                acc = (model(ic_content).argmax(-1) == ic.targets).float().mean().item()
            return {"beta1_0": init[0], "alpha_0": init[1], "xi_0": init[2], "step": step,
                    "loss": loss.item(), "ic_accuracy": acc, "beta1": model.beta1.item(),
                    "alpha": model.alpha.item(), "xi": model.xi.item()}

        rows += descend(model, loss_at, record, steps=steps, record_every=record_every, lr=lr)
    return pd.DataFrame(rows)
