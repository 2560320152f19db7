"""The local learning coefficient (LLC) of a checkpoint, estimated with devinterp 2.x.

Level: ``measures`` (imports ``errors``; ``devinterp`` is an optional dependency, the
``devinterp`` extra, imported on first use).

The LLC (Lau et al. 2023, "The Local Learning Coefficient: A Singularity-Aware Complexity
Measure") is the effective number of parameters, divided by two, that the loss landscape has
around a set of weights ``w*``: a regular minimum of ``d`` parameters has LLC ``d/2``, a
degenerate one less. Hoogland et al. 2024 ("The Developmental Landscape of In-Context
Learning") read the stages of a two-layer attention-only transformer, the forming of
induction heads among them, off the LLC over training, which is why it sits here beside the
head scores of Olsson et al. 2022. Its estimator samples the tempered posterior localised at
``w*`` with SGLD and reports

    LLC = n_beta * (E[L_n(w)] - L_n(w*))

where ``L_n`` is the mean per-token loss, ``n_beta`` the inverse temperature times the number of
samples, and the expectation runs over every SGLD step of every chain (devinterp's
``devinterp.slt.llc.llc`` averages all steps, burn-in included, so no burn-in is configured
here).

The "refined" per-head LLC restricts sampling to one head's weights
(``devinterp.slt.weight_restrictions.create_param_masks(model, "l1h3")``: its rows of
``W_Q, W_K, W_V, W_O`` and its biases); every other weight stays at ``w*``.

Convergence: an estimate is only meaningful when the chains' loss has settled, i.e. the LLC
trace flattens over draws. :func:`trace_drift` measures it; see
:data:`DRIFT_TOLERANCE` for the threshold (this package's choice).
"""

import contextlib
import functools
import logging
import math
import tempfile
import time
from dataclasses import dataclass
from typing import Literal, get_args

import einops
import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens import HookedTransformer

from induction_lens.errors import ConfigError, EvalError

__all__ = ["DRIFT_TOLERANCE", "LLCResult", "LLCSampler", "estimate_llc", "head_llc_scores",
           "require_devinterp", "trace_drift"]

logger = logging.getLogger(__name__)

LLCSampler = Literal["sgmcmc_sgld", "rmsprop_sgld"]
"""devinterp 2.x's sampling methods: plain SGLD, or SGLD with RMSprop preconditioning."""

DRIFT_TOLERANCE = 0.1
"""An estimate counts as converged when its :func:`trace_drift` is at most this share of the
LLC (our choice: the last quarter of the draws moves the estimate by under 10%)."""


def require_devinterp():
    """Import ``devinterp.slt.llc`` (2.x) or raise a :class:`ConfigError` saying how to get it."""
    try:
        from devinterp.slt import llc as module
    except ImportError as err:
        raise ConfigError(f"the LLC needs devinterp 2.x ({err}); install it with "
                          "pip install 'induction-lens[devinterp]'") from None
    return module


@dataclass(frozen=True)
class LLCResult:
    """One LLC estimate with what it rests on."""

    llc: float
    """Mean over chains of ``n_beta * (mean sampled loss - initial loss)``."""
    llc_std: float
    """Standard deviation of the per-chain estimates."""
    per_chain: np.ndarray
    """``[chain]`` estimates."""
    loss_trace: np.ndarray
    """``[chain, step]`` mean sampled loss per SGLD step."""
    init_loss: float
    """``L_n(w*)``: the loss at the weights being measured."""
    n_beta: float
    drift: float
    """:func:`trace_drift` of the trace (relative; NaN when the LLC is 0)."""
    seconds: float
    """Wall time of the estimate."""

    @property
    def converged(self) -> bool:
        """Whether the trace flattened: ``|drift| <= DRIFT_TOLERANCE``."""
        return math.isfinite(self.drift) and abs(self.drift) <= DRIFT_TOLERANCE


@contextlib.contextmanager
def _chain_bars(enabled: bool):
    """devinterp draws one tqdm bar per chain and has no switch for it: hide them unless asked."""
    from devinterp.slt import sampler

    original = sampler.trange
    if not enabled:
        sampler.trange = functools.partial(original, disable=True)
    try:
        yield
    finally:
        sampler.trange = original


def trace_drift(loss_trace: Float[np.ndarray, "chain step"], init_loss: float,
                n_beta: float) -> float:
    """How much the LLC estimate still moves at the end of sampling, relative to it.

    The running estimate after ``s`` draws is ``n_beta * (mean of the first s losses -
    init_loss)``; once the chains have reached the local posterior it stops moving. Returned:
    ``(llc_from_last_quarter - llc_from_third_quarter) / llc`` with each quarter's LLC
    computed from that quarter's mean loss (averaged over chains): near 0 for a flat trace,
    positive while the loss is still climbing (lr too small or too few draws), negative
    when the chains relax back (the estimate overshot).
    """
    trace = np.asarray(loss_trace, dtype=np.float64).mean(axis=0)
    n = len(trace)
    if n < 4:
        return float("nan")
    q3 = trace[n // 2: 3 * n // 4].mean()
    q4 = trace[3 * n // 4:].mean()
    llc = n_beta * (trace.mean() - init_loss)
    if llc == 0 or not math.isfinite(llc):
        return float("nan")
    return float(n_beta * (q4 - q3) / abs(llc))


def _check(name: str, value: object, *, positive: bool = True, integer: bool = False) -> None:
    ok = isinstance(value, int) if integer else isinstance(value, int | float)
    ok = ok and not isinstance(value, bool) and math.isfinite(float(value))
    ok = ok and (float(value) > 0 if positive else float(value) >= 0)
    if not ok:
        kind = "integer" if integer else "number"
        sign = "positive" if positive else "non-negative"
        raise EvalError(f"LLC: {name}={value!r} must be a {sign} {kind}")


def estimate_llc(model: torch.nn.Module, tokens: Int[Tensor, "batch pos"], *,
                 lr: float = 3e-3, n_beta: float | None = None, localization: float = 100.0,
                 num_chains: int = 2, num_draws: int = 200, batch_size: int = 32,
                 seed: int = 0, sampler: LLCSampler = "sgmcmc_sgld",
                 restriction: str | None = None, loss_fn=None,
                 device: str | torch.device | None = None, progress: bool = False
                 ) -> LLCResult:
    """Estimate the LLC of ``model`` at its current weights on ``tokens`` with devinterp 2.x.

    The model is not changed (devinterp samples on a copy of it per chain).

    Args:
        model: a ``HookedTransformer`` (called with ``return_type="logits"``) or, with
            ``loss_fn``, any module.
        tokens: the sampling dataset, ``[examples, pos]`` of equal length; the next-token loss
            of every position is the loss ``L_n``.
        lr: SGLD step size (devinterp's ``lr``, epsilon in Lau et al.).
        n_beta: inverse temperature times sample size; None: ``batch_size / ln(batch_size)``,
            devinterp's ``default_nbeta``.
        localization: strength ``gamma`` of the pull towards the measured weights.
        num_chains: independent SGLD chains.
        num_draws: draws per chain (one SGLD step each, no burn-in: devinterp's LLC averages
            every step).
        batch_size: examples per SGLD step.
        seed: devinterp's ``init_seed`` (chain ``c`` uses ``seed + c``).
        sampler: "sgmcmc_sgld" or "rmsprop_sgld".
        restriction: None for every weight, or a devinterp restriction such as ``"l1h3"`` (one
            head: the refined LLC).
        loss_fn: ``(model, input_ids) -> [batch, pos - 1]`` per-token loss; None: next-token
            cross-entropy of the logits.
        device: where to sample (default: the model's device).
        progress: show devinterp's progress bar of each chain.

    Returns:
        An :class:`LLCResult`.

    Raises:
        ConfigError: devinterp 2.x is not installed.
        EvalError: bad settings or too few examples for one batch.
    """
    for name, value in (("lr", lr), ("localization", localization)):
        _check(name, value, positive=name == "lr")
    for name, value in (("num_chains", num_chains), ("num_draws", num_draws),
                        ("batch_size", batch_size)):
        _check(name, value, integer=True)
    if n_beta is not None:
        _check("n_beta", n_beta)
    if sampler not in get_args(LLCSampler):
        raise EvalError(f"LLC: sampler={sampler!r} is not one of {get_args(LLCSampler)}")
    if tokens.ndim != 2 or tokens.shape[1] < 2:
        raise EvalError(f"LLC: tokens of shape {tuple(tokens.shape)} must be [examples, pos] "
                        "with pos >= 2")
    if tokens.shape[0] < batch_size:
        raise EvalError(f"LLC: {tokens.shape[0]} examples are fewer than batch_size="
                        f"{batch_size}; pass more tokens or lower the batch size")
    module = require_devinterp()
    from datasets import Dataset

    if n_beta is None:
        n_beta = batch_size / math.log(batch_size) if batch_size > 1 else 1.0
    param_masks = None
    if restriction is not None:
        from devinterp.slt.weight_restrictions import create_param_masks
        try:
            param_masks = create_param_masks(model, restriction)
        except ValueError as err:
            raise EvalError(f"LLC: restriction {restriction!r}: {err}") from None
    # Only parameters that train are sampled (b_K is frozen at zero, see build_model).
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    if param_masks is None:
        param_masks = {n: None for n in trainable}
    else:
        param_masks = {n: m for n, m in param_masks.items() if n in trainable}
    if device is None:
        device = next(model.parameters()).device
    dataset = Dataset.from_dict({"input_ids": tokens.detach().cpu().long().tolist()}
                                ).with_format("torch")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="induction_lens_llc_") as tmp, \
            _chain_bars(progress):
        # A fresh output path: devinterp returns a cached result when the path exists.
        result = module.llc(model, dataset, observables={}, lr=float(lr),
                            n_beta=float(n_beta), localization=float(localization),
                            num_chains=num_chains, num_draws=num_draws, batch_size=batch_size,
                            init_seed=seed, sampling_method=sampler, param_masks=param_masks,
                            loss_fn=loss_fn, device=str(device),
                            output_path=f"{tmp}/samples.zarr")
        per_chain = np.asarray(result["llc_per_chain"].values, dtype=np.float64)
        trace = np.asarray(result["loss_trace"].values, dtype=np.float64)
        init_loss = float(result["init_loss"])
    seconds = time.perf_counter() - t0
    if not np.isfinite(per_chain).all():
        raise EvalError("LLC: a chain diverged (non-finite loss); lower lr or raise "
                        "localization")
    drift = trace_drift(trace, init_loss, n_beta)
    out = LLCResult(llc=float(per_chain.mean()), llc_std=float(per_chain.std()),
                    per_chain=per_chain, loss_trace=trace, init_loss=init_loss,
                    n_beta=float(n_beta), drift=drift, seconds=seconds)
    logger.info("LLC %.3f +- %.3f (drift %.3f) in %.1f s", out.llc, out.llc_std, drift, seconds)
    return out


def head_llc_scores(model: HookedTransformer, tokens: Int[Tensor, "batch pos"],
                    **options) -> Float[Tensor, "n_layers n_heads"]:
    """The refined LLC of every head: :func:`estimate_llc` restricted to that head's weights.

    ``options`` are :func:`estimate_llc`'s (``restriction`` excepted). Costs one full
    estimate per head.
    """
    if "restriction" in options:
        raise EvalError("head_llc_scores sets restriction itself (one head at a time)")
    cfg = model.cfg
    values = [estimate_llc(model, tokens, restriction=f"l{layer}h{head}", **options).llc
              for layer in range(cfg.n_layers) for head in range(cfg.n_heads)]
    return einops.rearrange(torch.tensor(values, dtype=torch.float64),
                            "(layer head) -> layer head", layer=cfg.n_layers)
