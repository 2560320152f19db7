"""Reddy 2023's minimal network as a TransformerLens ``HookedTransformer``, and its reduced models.

G. Reddy, *The mechanistic basis of data dependence and abrupt learning in an in-context
classification task*, ICLR 2024 (arXiv 2312.03002).

**The network** (:class:`ReddyNetwork`, section 2): two attention layers of one head each,

    u <- u + softmax_causal((Q u)(K u)^T) (V u),

with Q, K, V of size ``d_model x d_model``, no 1/sqrt(d) scaling, no output projection, no
biases, no LayerNorm and no MLP between the layers, then a classifier (three ReLU layers of
width 128 and a linear readout to L logits) on the last token. As a ``HookedTransformer``
(our reading): ``attn_only``, ``normalization_type=None``, ``use_attn_scale=False``, one head
with ``d_head = d_model``, ``W_O`` fixed to the identity and every bias fixed at zero (frozen:
``requires_grad`` False), and the continuous input tokens fed as the residual stream
(``start_at_layer=0``). The unused token and position embeddings and unembedding stay in the
module (TransformerLens builds them) but are zero and frozen. Every TransformerLens hook
(``blocks.{l}.attn.hook_pattern``, ``hook_attn_scores``, ``hook_q``, ``hook_z``,
``blocks.{l}.hook_resid_post``, ...) works unchanged, as do ``run_with_cache``,
``run_with_hooks`` and ``model.QK``; ``hook_readout`` shows the classifier's input (the last
token's residual) and ``hook_logits`` its output.

Initialisation: Q, K, V entries N(0, ``init_std``^2) (the paper's N(0, 1/D)); the classifier's
layers PyTorch's default ``nn.Linear`` law, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and
biases (our choice; the paper does not say). Both are drawn from a generator seeded with
``seed``, so the same seed gives the same network without touching the global RNG.

**The induction-head model** (:class:`InductionHeadModel`, section 4): the paper's
few-parameter model of the induction head that emulates the network; the equations are our
reading (see the class docstring).

**The phenomenological model** (:class:`NestedLogitModel`, section 5): three nested logits,
beta1 (layer-1 copying), alpha (layer-2 matching) and xi (classifier alignment). The paper
gives the structure; the equations are our reconstruction (see the class docstring).
"""

import math
from collections.abc import Callable

import pandas as pd
import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn
from transformer_lens import HookedTransformer, HookedTransformerConfig
from transformer_lens.hook_points import HookPoint

from induction_lens.config import ReddyNetSpec
from induction_lens.errors import ConfigError
from induction_lens.models.transformer import quiet_deprecation

__all__ = ["InductionHeadModel", "NestedLogitModel", "ReddyNetwork", "build_reddy_network",
           "train_nested_logits"]


def _hooked_config(spec: ReddyNetSpec,
                   device: str | torch.device | None) -> HookedTransformerConfig:
    return HookedTransformerConfig(
        n_layers=spec.n_layers, d_model=spec.d_model, n_heads=1, d_head=spec.d_model,
        n_ctx=spec.n_ctx, d_vocab=1, attn_only=True, normalization_type=None,
        use_attn_scale=False, positional_embedding_type="standard", seed=None,
        device=str(device) if device is not None else "cpu", default_prepend_bos=False,
    )


class ReddyNetwork(HookedTransformer):
    """Reddy 2023's network: a two-layer one-head attention trunk and a ReLU classifier.

    Call it on continuous tokens ``[batch, pos, d_model]``; it returns the L label logits of the
    last position. See the module docstring for the equations and the frozen parameters.
    """

    def __init__(self, spec: ReddyNetSpec, *, seed: int | None = 0,
                 device: str | torch.device | None = None):
        cfg = _hooked_config(spec, device)
        with quiet_deprecation():
            super().__init__(cfg, move_to_device=False)
        self.spec = spec
        widths = [spec.d_model] + [spec.mlp_width] * spec.n_mlp_layers
        layers: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:], strict=True):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers.append(nn.Linear(widths[-1], spec.n_labels))
        self.classifier = nn.Sequential(*layers)
        self.hook_readout = HookPoint()  # [batch, d_model]
        self.hook_logits = HookPoint()  # [batch, n_labels]
        self.reset_parameters(seed)
        self.setup()
        if device is not None:
            self.to(torch.device(device), print_details=False)

    @torch.no_grad()
    def reset_parameters(self, seed: int | None = 0) -> None:
        """Draw Q, K, V and the classifier; fix W_O = I and every bias (and unused part) at 0."""
        gen = torch.Generator()
        if seed is None:
            gen.seed()
        else:
            gen.manual_seed(seed)
        d = self.spec.d_model
        for block in self.blocks:
            attn = block.attn
            for w in (attn.W_Q, attn.W_K, attn.W_V):
                w.copy_(torch.randn(w.shape, generator=gen) * self.spec.init_std)
            attn.W_O.copy_(torch.eye(d).reshape(1, d, d))
            for b in (attn.b_Q, attn.b_K, attn.b_V, attn.b_O):
                b.zero_()
            for p in (attn.W_O, attn.b_Q, attn.b_K, attn.b_V, attn.b_O):
                p.requires_grad_(False)
        for module in (self.embed, self.pos_embed, self.unembed):
            for p in module.parameters():
                p.zero_()
                p.requires_grad_(False)
        for layer in self.classifier:
            if isinstance(layer, nn.Linear):
                bound = 1.0 / math.sqrt(layer.in_features)
                for p in (layer.weight, layer.bias):
                    p.copy_(torch.rand(p.shape, generator=gen) * 2 * bound - bound)

    def forward(self, inputs: Float[Tensor, "batch pos d_model"]  # type: ignore[override]
                ) -> Float[Tensor, "batch n_labels"]:
        """Label logits read from the last position."""
        if inputs.ndim != 3 or inputs.shape[-1] != self.spec.d_model:
            raise ConfigError(f"ReddyNetwork takes tokens [batch, pos, {self.spec.d_model}], got "
                              f"shape {tuple(inputs.shape)}; build inputs with "
                              "induction_lens.data.reddy")
        resid = super().forward(inputs, start_at_layer=0, stop_at_layer=self.cfg.n_layers)
        return self.hook_logits(self.classifier(self.hook_readout(resid[:, -1])))


def build_reddy_network(spec: ReddyNetSpec, *, seed: int | None = 0,
                        device: str | torch.device | None = None) -> ReddyNetwork:
    """A freshly initialised :class:`ReddyNetwork` (the same ``seed`` gives the same weights)."""
    return ReddyNetwork(spec, seed=seed, device=device)


class NestedLogitModel(nn.Module):
    """Reddy 2023's phenomenological model of induction-head formation (section 5).

    The paper: abrupt in-context learning traced to "the sequential learning of three nested
    logits enabled by an intrinsic curriculum". Its parameters: beta1 (layer 1 copies each
    item into its label token), alpha (layer 2 matches the query with the right label) and
    xi (the classifier reads the label layer 2 returns). The equations are **our
    reconstruction**, chosen to show the claimed behaviour:

    * p1 = sigmoid(beta1): how much of its item each label token carries;
    * p2 = e^(alpha p1) / (e^(alpha p1) + N - 1): layer 2's attention on the correct label
      among the N context labels;
    * logits: the correct label xi p2, each other context label xi (1 - p2) / (N - 1),
      each of the L - N absent labels 0; loss: cross-entropy (nats).

    At the origin only xi has a gradient, ``d loss / d xi = -(1/N - 1/L)`` (the network first
    learns to pick a label present in the context), alpha's gradient is proportional to xi and
    beta1's to alpha xi: xi, then alpha, then beta1 (the "intrinsic curriculum"). With L = N the
    gradient is exactly zero and the model never leaves the origin.
    """

    def __init__(self, n_items: int, n_labels: int, *, beta1: float = 0.0, alpha: float = 0.0,
                 xi: float = 0.0):
        super().__init__()
        if not isinstance(n_items, int) or n_items < 2:
            raise ConfigError(f"n_items={n_items!r} must be an integer >= 2 (N context labels)")
        if not isinstance(n_labels, int) or n_labels < n_items:
            raise ConfigError(f"n_labels={n_labels!r} must be an integer >= n_items={n_items} "
                              "(the N context labels are distinct labels)")
        self.n_items, self.n_labels = n_items, n_labels
        self.beta1 = nn.Parameter(torch.tensor(float(beta1), dtype=torch.float64))
        self.alpha = nn.Parameter(torch.tensor(float(alpha), dtype=torch.float64))
        self.xi = nn.Parameter(torch.tensor(float(xi), dtype=torch.float64))

    def p_correct_attention(self) -> Tensor:
        """p2: layer 2's attention on the correct label."""
        p1 = torch.sigmoid(self.beta1)
        e = torch.exp(self.alpha * p1)
        return e / (e + self.n_items - 1)

    def logits(self) -> Float[Tensor, " n_labels"]:
        """Logits: index 0 the correct label, 1..N-1 the other context labels, then absent."""
        p2 = self.p_correct_attention()
        n, ell = self.n_items, self.n_labels
        other = self.xi * (1 - p2) / (n - 1)
        return torch.cat([(self.xi * p2).reshape(1), other.reshape(1).expand(n - 1),
                          torch.zeros(ell - n, dtype=p2.dtype)])

    def forward(self) -> Float[Tensor, ""]:
        """The cross-entropy loss (nats) of the correct label."""
        return -F.log_softmax(self.logits(), dim=0)[0]

    def p_correct(self) -> Float[Tensor, ""]:
        """Probability the model gives the correct label."""
        return F.softmax(self.logits(), dim=0)[0]


def train_nested_logits(n_items: int = 8, n_labels: int = 32, *, steps: int = 15_000,
                        lr: float = 0.01, record_every: int = 50,
                        init: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> pd.DataFrame:
    """Plain gradient descent on :class:`NestedLogitModel` from ``init`` (default the origin).

    Returns one row per recorded step: ``step, loss, p_correct, beta1, alpha, xi``, step 0
    included (float64 throughout).
    """
    if not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"steps={steps!r} must be a positive integer")
    if not isinstance(record_every, int) or record_every < 1:
        raise ConfigError(f"record_every={record_every!r} must be a positive integer")
    if not (lr > 0 and math.isfinite(lr)):
        raise ConfigError(f"lr={lr!r} must be a positive finite number")
    model = NestedLogitModel(n_items, n_labels, beta1=init[0], alpha=init[1], xi=init[2])
    rows = descend(model, lambda step: model(), lambda step, loss: {
        "step": step, "loss": loss.item(), "p_correct": model.p_correct().item(),
        "beta1": model.beta1.item(), "alpha": model.alpha.item(), "xi": model.xi.item()},
        steps=steps, record_every=record_every, lr=lr)
    return pd.DataFrame(rows)


def descend(model: nn.Module, loss_at: Callable[[int], Tensor],
            record: Callable[[int, Tensor], dict], *, steps: int, record_every: int,
            lr: float) -> list[dict]:
    """Plain SGD on ``model``'s trainable parameters for ``steps`` steps: the reduced models'
    loop. ``loss_at(step)`` is the loss before step ``step``; ``record(step, loss)`` gives the
    row kept every ``record_every`` steps and at the end (step 0 included)."""
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr)
    rows = []
    for step in range(steps + 1):
        loss = loss_at(step)
        if step % record_every == 0 or step == steps:
            rows.append(record(step, loss))
        if step == steps:
            break
        opt.zero_grad()
        loss.backward()
        opt.step()
    return rows


class InductionHeadModel(nn.Module):
    """A three-parameter model of the induction head (Reddy 2023, section 4; **our reading**).

    The paper: "we construct a two-parameter model of an induction head which emulates the full
    data distributional dependencies" and a three-parameter version reproduces the network's
    dynamics, while "removing one component makes success depend on initialisation". It does
    not give the equations here; ours act on the content part of the task's tokens (positions
    are implicit in the fixed roles of the tokens):

    * layer 1: label token i attends to its item with weight p1 = sigmoid(beta1) (and to itself
      with 1 - p1), so it carries ``h_i = p1 x_i + (1 - p1) l_i``;
    * layer 2: the query attends to the N label tokens with weights
      ``softmax_i(alpha * x_q . h_i)`` and reads ``o = sum_i a_i h_i``;
    * classifier: label m gets the logit ``xi * l_m . o``.

    With ``learn_beta1=False`` beta1 is frozen at its initial value (the two-parameter model:
    layer 1's copying is no longer learned, so success depends on where beta1 starts).
    """

    def __init__(self, labels: Float[Tensor, "L D"], *, beta1: float = 0.0, alpha: float = 0.0,
                 xi: float = 0.0, learn_beta1: bool = True):
        super().__init__()
        self.register_buffer("labels", labels.detach().clone())
        self.beta1 = nn.Parameter(torch.tensor(float(beta1)), requires_grad=learn_beta1)
        self.alpha = nn.Parameter(torch.tensor(float(alpha)))
        self.xi = nn.Parameter(torch.tensor(float(xi)))

    def forward(self, content: Float[Tensor, "batch pos D"]) -> Float[Tensor, "batch L"]:
        """Label logits from the content dims of a batch of sequences ``x1, l1, ..., xq``."""
        items, labels, query = content[:, 0:-1:2], content[:, 1::2], content[:, -1]
        p1 = torch.sigmoid(self.beta1)
        h = p1 * items + (1 - p1) * labels                                  # [batch, N, D]
        scores = self.alpha * torch.einsum("bd,bnd->bn", query, h)
        out = torch.einsum("bn,bnd->bd", scores.softmax(-1), h)
        return self.xi * out @ self.labels.T
