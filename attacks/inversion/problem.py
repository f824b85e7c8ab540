"""Stage 1 of the engine: turn the caller's inputs into an inversion :class:`Problem`.

A problem holds a private functional copy of the model (never the caller's module), the target(s) to match
(one gradient or fake gradient, or several (weights, gradient) pairs of one client), the labels of the dummy
batch, the normalisation and the device and dtype every tensor of the attack lives on: those of the model's
parameters. Nothing here reads ground truth.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from fedsim.attacks.inversion import fedavg as _fedavg
from fedsim.attacks.inversion import labels as _labels
from fedsim.attacks.inversion import regularizers as _regularizers
from fedsim.core.errors import AttackNotApplicable


@dataclass(frozen=True)
class Problem:
    """Everything the optimisation needs, on one device and dtype (those of the model's parameters)."""

    model: nn.Module  # private copy; train-mode BatchNorm uses batch statistics and never updates buffers
    names: tuple[str, ...]
    buffers: dict[str, torch.Tensor]
    pairs: tuple[tuple[dict[str, torch.Tensor], tuple[torch.Tensor, ...]], ...]  # (weights, target) per update
    hard_labels: torch.Tensor | None  # LongTensor[K] on the device, or None (joint soft labels)
    k: int
    num_classes: int
    input_shape: tuple[int, ...]
    mean: torch.Tensor  # [C, 1, 1]
    std: torch.Tensor
    bn_reference: tuple[tuple[torch.Tensor, torch.Tensor], ...]
    local_steps: int
    local_batch_size: int
    client_lr: float
    clip_norm: float = 0.0  # DP-SGD's per-example clipping norm (target "clipped"); 0: no clipping

    @property
    def device(self) -> torch.device:
        return self.mean.device

    @property
    def dtype(self) -> torch.dtype:
        return self.mean.dtype


def _as_stats(values, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(values, dtype=like.dtype, device=like.device).view(-1, 1, 1)


def private_model(model: nn.Module, train: bool) -> tuple[nn.Module, list[tuple[torch.Tensor, torch.Tensor]]]:
    """A frozen copy of ``model``; in train mode BN layers stop tracking running statistics (so that restarts can
    be vmapped and nothing drifts). Returns the copy and the running statistics read before that."""
    model = copy.deepcopy(model)
    model.train(train)
    for p in model.parameters():
        p.requires_grad_(False)
    bn = _regularizers.bn_layers(model)
    running = [(m.running_mean.detach().clone(), m.running_var.detach().clone())
               for m in bn if m.running_mean is not None]
    if train and bn:
        torch.func.replace_all_batch_norm_modules_(model)
    return model, running


def _targets(model: nn.Module, names, params, gradients, target: str, extra: Mapping[str, Any]):
    like = params[names[0]]
    cast = dict(dtype=like.dtype, device=like.device)
    if gradients is None and "weights_after" in extra:
        if "lr" not in extra or "local_steps" not in extra:
            raise ValueError("weights_after needs the client's lr and local_steps")
        after = [t.to(**cast) for t in _fedavg.as_param_list(model, extra["weights_after"], "weights_after")]
        gradients = _fedavg.target_from_weights(model, after, extra["lr"], extra["local_steps"])
    pairs = []
    if gradients is not None:
        g = _fedavg.as_param_list(model, gradients, "gradients")
        pairs.append((params, tuple(t.detach().to(**cast) for t in g)))
    if target == "multi":
        for i, (w, g) in enumerate(extra.get("updates", [])):
            w_list = _fedavg.as_param_list(model, w, f"updates[{i}].weights")
            g_list = _fedavg.as_param_list(model, g, f"updates[{i}].gradient")
            pairs.append(({n: t.detach().to(**cast) for n, t in zip(names, w_list)},
                          tuple(t.detach().to(**cast) for t in g_list)))
    elif "updates" in extra:
        raise ValueError("option 'updates' needs target='multi' (method 'multi-update')")
    if not pairs:
        raise ValueError("no target: pass gradients=..., weights_after=... (with lr, local_steps) or updates=[...]")
    return tuple(pairs)


def _labels_of(spec, model, labels, pairs, extra, device) -> tuple[torch.Tensor | None, int]:
    if spec.label_mode == "given":
        if labels is None:
            raise ValueError("label_mode='given' needs labels=... (e.g. from fedsim.attacks.labels.restore_labels); "
                             "or use label_mode='joint'")
        # unrolled FedAvg: batch composition matters, so labels keep the caller's order (k-th label = k-th
        # example the client visited); otherwise they are sorted and assigned by count (iLRG Sec. 4.4)
        hard = _labels.as_label_list(labels, sort=spec.target != "unrolled")
        return hard.to(device), len(hard)
    if spec.label_mode == "idlg":
        if int(extra.get("num_samples", 1)) != 1:
            raise AttackNotApplicable("iDLG label inference works for batch size 1 only")
        hard = _labels.idlg_label(model, list(pairs[0][1])) if labels is None else _labels.as_label_list(labels)
        return hard.to(device), 1
    return None, int(extra.get("num_samples", len(labels) if labels is not None else 1))


def build_problem(spec, *, model: nn.Module, gradients, labels, input_shape: Sequence[int], mean, std,
                  extra: Mapping[str, Any]) -> Problem:
    """Prepare stage: model copy, targets, labels and constants on the model's device and dtype."""
    source = next(model.parameters())
    model, running = private_model(model, spec.model_mode == "train")
    names = tuple(n for n, _ in model.named_parameters())
    params = {n: p.detach() for n, p in model.named_parameters()}
    buffers = {n: b.detach() for n, b in model.named_buffers()}
    pairs = _targets(model, names, params, gradients, spec.target, extra)
    hard, k = _labels_of(spec, model, labels, pairs, extra, source.device)
    bn_reference: list = []
    if "bn" in spec.regularizers and float(spec.regularizers["bn"]) != 0.0:
        given = extra.get("bn_statistics")
        if given is not None:
            bn_reference = [(m.detach().to(source), v.detach().to(source)) for m, v in given]
        elif not _regularizers.bn_layers(model):
            raise AttackNotApplicable("regularizer 'bn' needs a model with BatchNorm layers (or bn_statistics)")
        else:
            if not running:
                raise AttackNotApplicable("bn regularizer: a BatchNorm layer has track_running_stats=False; "
                                          "pass bn_statistics")
            bn_reference = running
    client_lr = float(extra.get("lr", 0.0))
    if spec.target == "unrolled" and client_lr <= 0:
        raise ValueError("target 'unrolled' (fedavg-unrolled) needs the client's lr=... and local_steps=...")
    clip_norm = float(extra.get("clip_norm", 0.0))
    if spec.target == "clipped" and _regularizers.bn_layers(model):
        raise AttackNotApplicable("target 'clipped' needs per-example gradients; a BatchNorm model mixes the "
                                  "examples of a batch (DP-SGD clients use GroupNorm instead: Opacus refuses "
                                  "BatchNorm)")
    return Problem(model=model, names=names, buffers=buffers, pairs=pairs, hard_labels=hard, k=k,
                   num_classes=int(extra.get("num_classes") or _labels.classifier_layer(model).out_features),
                   input_shape=tuple(int(s) for s in input_shape), mean=_as_stats(mean, source),
                   std=_as_stats(std, source), bn_reference=tuple(bn_reference),
                   local_steps=int(extra.get("local_steps", 1)), local_batch_size=int(extra.get("local_batch_size", k)),
                   client_lr=client_lr, clip_norm=clip_norm)
