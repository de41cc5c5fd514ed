"""Pretraining optimizers: AdamW everywhere, or Muon for the hidden matrices with AdamW for the rest.

The Muon split follows the speedrun records and nanochat: Muon (orthogonalised momentum, `torch.optim.Muon`) for
the 2-D weight matrices inside the transformer blocks; AdamW for what is not a linear map between hidden states
(the token embedding and the output head, tied or not, whose rows are looked up or read one token at a time) and
for the 1-D gains. Both optimizers live in one `OptimizerPair` so the loop steps, schedules and checkpoints them as
one optimizer: its state dict holds both (Muon's momentum buffers and AdamW's moments), so kill-and-resume stays
bit-identical.
"""

from __future__ import annotations

from typing import Any

import torch

from .scaffold import adamw, trainable_parameters

LR_SCALE = "lr_scale"  # a param group's LR as a multiple of the scheduled AdamW LR (Muon's: muon_lr / lr)


class OptimizerPair:
    """Several optimizers stepped as one, with the part of `torch.optim.Optimizer`'s interface the loop uses:
    `param_groups` is theirs concatenated (the loop sets each group's LR), the state dict the list of theirs."""

    def __init__(self, optimizers: list[torch.optim.Optimizer]) -> None:
        self.optimizers = optimizers

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return [group for opt in self.optimizers for group in opt.param_groups]

    def step(self) -> None:
        for opt in self.optimizers:
            opt.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return {"optimizers": [opt.state_dict() for opt in self.optimizers]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        saved = state_dict["optimizers"]
        if len(saved) != len(self.optimizers):
            raise ValueError(f"optimizer state holds {len(saved)} optimizers; this run has {len(self.optimizers)}")
        for opt, state in zip(self.optimizers, saved, strict=True):
            opt.load_state_dict(state)


def muon_matrices(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The hidden 2-D matrices Muon trains: every 2-D trainable parameter but the input and output embeddings."""
    embeddings = {id(m.weight) for m in (model.get_input_embeddings(), model.get_output_embeddings()) if m is not None}
    return [p for p in trainable_parameters(model) if p.dim() == 2 and id(p) not in embeddings]


def muon_with_adamw(
    model: torch.nn.Module, lr: float, muon_scale: float, weight_decay: float, betas: tuple[float, float]
) -> OptimizerPair:
    """Muon (Nesterov momentum 0.95, 5 Newton-Schulz steps, decoupled weight decay) on the hidden matrices at
    `muon_scale` times AdamW's LR, AdamW on the rest at `lr`; the Muon group's `lr_scale` keeps that ratio along
    the schedule."""
    matrices = muon_matrices(model)
    chosen = {id(p) for p in matrices}
    rest = [p for p in trainable_parameters(model) if id(p) not in chosen]
    muon = torch.optim.Muon(matrices, lr=lr * muon_scale, weight_decay=weight_decay, momentum=0.95, nesterov=True)
    for group in muon.param_groups:
        group[LR_SCALE] = muon_scale
    return OptimizerPair([muon, adamw(rest, weight_decay, lr, betas)])


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Each param group at the scheduled `lr` times its own `lr_scale` (1 unless set: AdamW's groups)."""
    for group in optimizer.param_groups:
        scale = group.get(LR_SCALE)
        group["lr"] = lr if scale is None else lr * scale
