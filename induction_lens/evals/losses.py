"""Per-token losses (appendix "(1) Per-token losses (unaltered models)").

Convention used by every evaluator of this package: the loss at context index ``i`` is the
cross-entropy of predicting token ``i`` from tokens ``0..i-1``. Index 0 (the BOS token) has no
loss, so a ``[batch, n_ctx]`` token tensor gives ``[batch, n_ctx - 1]`` losses whose column
``j`` is context index ``j + 1``.
"""

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens import HookedTransformer


@torch.no_grad()
def per_token_losses(model: HookedTransformer, tokens: Int[Tensor, "batch pos"], *,
                     batch_size: int = 64) -> Float[Tensor, "batch pos_minus_1"]:
    """Next-token losses (nats) of every position, streamed in batches of ``batch_size``.

    Column ``j`` is the loss at context index ``j + 1`` (see the module docstring).
    """
    device = next(model.parameters()).device
    out = []
    for start in range(0, tokens.shape[0], batch_size):
        chunk = tokens[start:start + batch_size].to(device)
        logits = model(chunk)
        losses = F.cross_entropy(logits[:, :-1].transpose(1, 2), chunk[:, 1:], reduction="none")
        out.append(losses.float().cpu())
    return torch.cat(out) if out else torch.empty(0, tokens.shape[1] - 1)
