"""The curious server's attack on one captured update, from the threat model's inputs only.

Inputs: the architecture (a model factory), the weights it sent, the update it received, the training
hyper-parameters it configured and the example count the client reported. No ground truth: scoring is done
elsewhere (``fedsim.evaluation.scoring``) and a test proves the output is identical whether ground truth exists or not.

K (samples the fake gradient averages) is estimated from what the client released: ``min(B, n)`` under FedSGD,
``n`` under FedAvg (``fedsim.core.defense.dp_sgd.released_examples``). Under DP-SGD's Poisson sampling that is the *expected*
number of sample visits; the realised one is private and never leaves the client.

Steps: fake gradient (Geng et al.) -> every configured label restoration method -> inversion with the labels
of the first method that succeeded (iLRG Sec. 4.4: restored labels assigned to dummy inputs by count).

Everything the server sees goes in: when the model has train-mode BatchNorm and the update carries its buffers,
the batch statistics they reveal feed a BN prior whose weight the attack chooses itself
(``fedsim.attacks.inversion.bn_buffers``). Every inversion result lists the server-side ``signals`` it used and
carries ``criterion``, the reconstruction's own gradient match (``fedsim.attacks.inversion.criterion``), one
number comparable across methods on the same update. When the client released its training loss
(``update.reported_loss``), the reconstruction's own loss under the client's schedule is set against it
(``fedsim.attacks.reported_loss``) and the gap is a signal line: a second no-ground-truth check of the reconstruction.
"""

from __future__ import annotations

import copy
import logging
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
from torch import nn

from fedsim.attacks.gradients import fake_gradient
from fedsim.attacks.inversion import INVERSION_METHODS
from fedsim.attacks.inversion.bn_buffers import auto_bn_options, statistics_from_update
from fedsim.attacks.inversion.criterion import criterion_name, gradient_cosine_distance
from fedsim.attacks.labels import LABEL_METHODS, restore_labels, samples_covered
from fedsim.attacks.defense_view import shadow_defense_from_record
from fedsim.attacks.records import AttackMethod, Need
from fedsim.attacks.reported_loss import consistency_signal, loss_settings, simulated_mean_loss
from fedsim.core.errors import AttackNotApplicable
from fedsim.core.types import AttackResult, ClientUpdate, InversionResult, LabelResult

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AttackPlan:
    """What to run on each update (from the ``[attack]`` config section)."""

    label_methods: tuple[str, ...] = ("ilrg",)
    inversion: str | None = None
    inversion_steps: int = 200
    max_inversion_images: int = 16
    seed: int = 0
    inversion_options: Mapping[str, Any] = field(default_factory=dict)
    label_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # method -> extra options


@dataclass(frozen=True)
class DataSpec:
    """Public facts about the task: input shape, classes, input normalisation, and optionally the server's
    public labelled split (pixel space [0, 1] images [N, C, H, W], labels [N]; e.g.
    ``fedsim.attacks.generative.aux_split(dataset)``), which the methods that need the "public split" use."""

    input_shape: tuple[int, ...]
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    public_aux: tuple[torch.Tensor, torch.Tensor] | None = field(default=None, compare=False, repr=False)


def server_view_model(update: ClientUpdate, model_factory: Callable[[], nn.Module]) -> nn.Module:
    """The global model as the server sent it (parameters and buffers before local training)."""
    model = model_factory()
    state = dict(update.weights_before)
    state.update(update.buffers_before)
    missing = [k for k in model.state_dict() if k not in state]
    if missing and update.buffers_before:
        raise KeyError(f"capture lacks model tensors {missing[:5]}")
    model.load_state_dict(state, strict=not missing)
    model.train()
    return model


def _failure(update: ClientUpdate, result: type[AttackResult], method: str, exc: BaseException, start: float
             ) -> AttackResult:
    """A failed attack of type ``result``, or a skipped one when it raised ``AttackNotApplicable`` (not tried,
    did not fail)."""
    if isinstance(exc, AttackNotApplicable):
        return result(update.client_id, update.server_round, method, ok=False,
                      seconds=time.perf_counter() - start, error=str(exc), not_applicable=True)
    tb = traceback.format_exception_only(type(exc), exc)[-1].strip()
    return result(update.client_id, update.server_round, method, ok=False, seconds=time.perf_counter() - start,
                  error=tb)


def dp_sgd_clip_norm(update: ClientUpdate, method: str) -> float:
    """DP-SGD's per-example clipping norm as the server configured it (public in the threat model: the
    ``[defense]`` settings travel in ``update.defenses``, read back by the defense objects);
    ``AttackNotApplicable`` when DP-SGD was off."""
    dp_sgd = update.defenses.in_force.get("dp_sgd")
    if dp_sgd is None:
        raise AttackNotApplicable(f"{method} models DP-SGD's per-example clipping; this update was not trained "
                                  "with DP-SGD (defense.dp_sgd.enabled is off)")
    return float(dp_sgd.max_grad_norm)


def _public_split(data: DataSpec) -> dict[str, Any]:
    """The ``aux=`` option: the public split normalised to model space (nothing when the spec has none)."""
    if data.public_aux is None:
        return {}
    x, y = data.public_aux
    mean = torch.tensor(data.mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    std = torch.tensor(data.std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    return {"aux": ((x - mean) / std, y)}


def need_options(record: AttackMethod, update: ClientUpdate, k: int, data: DataSpec,
                 given: Mapping[str, Any], calibration_cache: Any = None) -> dict[str, Any]:
    """The options that supply ``record.needs`` from the update and the task (``fedsim.attacks.records.NEEDS``); the
    client schedule overrides ``given``, the public split and the clip norm only fill what ``given`` lacks.
    Raises ``AttackNotApplicable`` when the method does not apply (``record.applies``) or the update cannot
    supply a need (DP-SGD clip norm of an update trained without DP-SGD). "trained prior" comes with the plan's
    options (``fedsim.evaluation.attacking``); "buffers" with the server-view model; "calibration cache" is the
    runner's ``calibration_cache`` when it keeps one."""
    reason = record.applies(update)
    if reason is not None:
        raise AttackNotApplicable(f"{record.name}: {reason}")
    out: dict[str, Any] = {}
    if Need.PUBLIC_SPLIT in record.needs and "aux" not in given:
        out.update(_public_split(data))
    if Need.CLIENT_SCHEDULE in record.needs:
        out.update(lr=update.lr, local_steps=update.local_steps, local_batch_size=min(update.batch_size, k))
    if Need.DP_SGD_CLIP_NORM in record.needs and "clip_norm" not in given:
        out["clip_norm"] = dp_sgd_clip_norm(update, record.name)
    if Need.DEFENSE_SETTINGS in record.needs and "shadow_defense" not in given:
        defense = shadow_defense_from_record(update.defenses)
        if defense is not None:
            out["shadow_defense"] = defense
    if Need.CALIBRATION_CACHE in record.needs and calibration_cache is not None and "calibration_cache" not in given:
        out["calibration_cache"] = calibration_cache
    return out


def _label_options(record: AttackMethod, update: ClientUpdate, k: int, plan: AttackPlan, data: DataSpec) -> dict:
    """Options for one label method: input shape, the plan's per-method options and what the method needs."""
    options: dict[str, Any] = {"input_shape": data.input_shape, **plan.label_options.get(record.name, {})}
    return {**options, **need_options(record, update, k, data, options)}


def attack_update(update: ClientUpdate, model_factory: Callable[[], nn.Module], plan: AttackPlan,
                  data: DataSpec, k_estimate: int | None = None, calibration_cache: Any = None
                  ) -> list[AttackResult]:
    """Run the plan on one update; an exception in one attack becomes a failed ``AttackResult``.

    K (sample visits the fake gradient averages) comes from the reported example count
    (``samples_covered``) unless ``k_estimate`` is given (e.g. the expected batch of a DP-SGD client whose
    realised count is not released); label results then carry ``k_source="estimate"``.
    ``calibration_cache``: the runner's ``fedsim.attacks.inversion.calibration.CalibrationCache``, shared by the
    updates it attacks (``ig-shadow`` calibrates once per round's model and schedule); None: each calibrates alone.
    """
    results: list[AttackResult] = []
    start = time.perf_counter()
    try:
        model = server_view_model(update, model_factory)
        grads = fake_gradient(update, model)
        if k_estimate is not None:
            k, k_source = int(k_estimate), "estimate"
        else:
            k = samples_covered(update.local_steps, update.batch_size, update.num_examples, update.local_epochs)
            k_source = "reported"
    except Exception as exc:  # noqa: BLE001 - a broken capture fails its attacks, not the run
        return [_failure(update, LabelResult, m, exc, start) for m in plan.label_methods]
    first_labels: tuple[str, torch.Tensor] | None = None
    for method in plan.label_methods:
        start = time.perf_counter()
        try:
            record = LABEL_METHODS[method]  # the one lookup of this method in this attack
            res = restore_labels(record, model=model, gradients=grads, num_samples=k,
                                 **_label_options(record, update, k, plan, data))
        except Exception as exc:  # noqa: BLE001
            results.append(_failure(update, LabelResult, method, exc, start))
            continue
        results.append(LabelResult(update.client_id, update.server_round, method, ok=True, labels=res.labels,
                                   seconds=time.perf_counter() - start, restoration=res, num_samples=k,
                                   k_source=k_source))
        if first_labels is None and not res.presence_only:
            first_labels = (method, res.labels)
    if plan.inversion:
        results.append(_invert(update, model, grads, k, first_labels, plan, data, calibration_cache))
    return results


def _signals(record: AttackMethod, options: Mapping[str, Any], label_source: str) -> list[str]:
    """What the server saw that this inversion uses besides the fake gradient (``InversionResult.signals``): what
    its options carry, and what the record says the method always uses (``AttackMethod.signals``)."""
    out = [f"labels: {label_source}"] if label_source != "none" else []
    spec = record.spec
    if spec is not None and options.get("target", spec.target) == "unrolled":
        out.append("client schedule")  # the simulated local SGD steps (lr, T, B)
    if "aux" in options or "public split" in record.signals:
        out.append("public split")
    if "clip_norm" in options:
        out.append("DP-SGD clip norm")
    if options.get("shadow_defense") is not None:
        out.append(f"defense settings: {options['shadow_defense'].describe()} (simulated on the shadow update)")
    return out


def _bn_prior(record: AttackMethod, update: ClientUpdate, model: nn.Module, k: int, data: DataSpec,
              call: Mapping[str, Any], options: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The BatchNorm prior on the batch statistics the sent buffers reveal, added automatically when the model
    has train-mode BatchNorm and the update carries its buffers (``fedsim.attacks.inversion.bn_buffers``);
    (options, signals). A method that cannot take it, or buffers that cannot be solved, leave the options as
    they are (a method that needs the buffers then uses the running statistics it was sent)."""
    try:
        buffers = statistics_from_update(model, update.buffers_before, update.buffers_after, update.local_steps,
                                         min(update.batch_size, k), data.input_shape)
    except AttackNotApplicable as exc:  # buffers that cannot be solved: the attack runs without the prior
        _log.info("client %s round %s: %s", update.client_id, update.server_round, exc)
        buffers = None
    added = auto_bn_options(record.name, model, call, options, buffers) if buffers is not None else None
    if added is None:
        used = Need.BUFFERS in record.needs
        return options, (["bn running statistics (sent)"] if used else [])
    return added.options, (["bn-buffers"] if added.weight else []) + [added.line]


def _criterion(update: ClientUpdate, model: nn.Module, grads: list[torch.Tensor], k: int, x_hat: torch.Tensor,
               labels: torch.Tensor | None) -> tuple[float | None, str | None]:
    """The no-ground-truth score of a reconstruction (``fedsim.attacks.inversion.criterion``); labels the attack
    assigned, else the model's own predictions on the reconstruction."""
    steps, batch = update.local_steps, min(update.batch_size, k)
    defense = shadow_defense_from_record(update.defenses)
    sent_only = defense is not None and defense.sparsifies  # compare what the client sent, not the dropped zeros
    name = criterion_name(steps, batch, sent_only)
    if labels is None or len(labels) != len(x_hat):
        with torch.no_grad():
            labels = copy.deepcopy(model).eval()(x_hat.to(next(model.parameters()))).argmax(-1)
        name += " (labels: model argmax)"
    try:
        return gradient_cosine_distance(model, x_hat, labels, grads, lr=update.lr, local_steps=steps,
                                        local_batch_size=batch, sent_only=sent_only), name
    except Exception:  # noqa: BLE001 - a score that cannot be computed leaves the result without one
        return None, None


def _reported_loss_signal(update: ClientUpdate, model: nn.Module, k: int, x_hat: torch.Tensor,
                          labels: torch.Tensor | None) -> list[str]:
    """The reported-loss line of a reconstruction (``fedsim.attacks.reported_loss``): nothing when the client
    released no loss, its loss cannot be reproduced (mixup) or the score cannot be computed."""
    smoothing = loss_settings(update.defenses)
    if update.reported_loss is None or smoothing is None:
        return []
    if labels is None or len(labels) != len(x_hat):
        with torch.no_grad():
            labels = copy.deepcopy(model).eval()(x_hat.to(next(model.parameters()))).argmax(-1)
    try:
        mine = simulated_mean_loss(model, x_hat, labels, local_steps=update.local_steps,
                                   local_batch_size=min(update.batch_size, k), lr=update.lr, label_smoothing=smoothing)
    except Exception:  # noqa: BLE001 - a check that cannot be computed leaves the result without it
        return []
    return [consistency_signal(update.reported_loss, mine)]


def _invert(update: ClientUpdate, model: nn.Module, grads: list[torch.Tensor], k: int,
            labels: tuple[str, torch.Tensor] | None, plan: AttackPlan, data: DataSpec,
            calibration_cache: Any = None) -> InversionResult:
    start = time.perf_counter()
    method = plan.inversion
    try:
        if k > plan.max_inversion_images:
            raise AttackNotApplicable(f"update covers {k} samples > attack.max_inversion_images="
                                      f"{plan.max_inversion_images}")
        record = INVERSION_METHODS[method]
        options = dict(plan.inversion_options)
        options.update(need_options(record, update, k, data, options, calibration_cache))
        label_source = labels[0] if labels else "none"
        signals = _signals(record, options, label_source)
        call = dict(model=model, gradients=grads, labels=labels[1] if labels else None,
                    input_shape=data.input_shape, steps=plan.inversion_steps, mean=data.mean, std=data.std,
                    seed=plan.seed, num_samples=k)
        options, bn_signals = _bn_prior(record, update, model, k, data, call, options)
        traced = record.traces
        out = record(**call, **options, **({"return_result": True} if traced else {}))
        x_hat, assigned = (out.inputs, out.labels) if traced else (out, call["labels"])
        put_on_images = assigned  # the labels on the images, in their order (None: the method put none on them)
        signals += record.trace_signals(out, k) if traced and record.trace_signals else []  # how it tuned itself
        if assigned is not None and not traced:
            assigned = assigned.sort().values
        criterion, name = _criterion(update, model, grads, k, x_hat.detach(), assigned)
        signals += _reported_loss_signal(update, model, k, x_hat.detach(), assigned)
    except Exception as exc:  # noqa: BLE001
        return _failure(update, InversionResult, str(method), exc, start)
    # the labels the method put on its images, in their order (None when it assigned none: spear's batch comes in
    # its own order, and the label method's labels would pair the wrong images in the label-aware alignment)
    return InversionResult(update.client_id, update.server_round, method, ok=True,
                           labels=put_on_images, reconstruction=x_hat.detach(),
                           seconds=time.perf_counter() - start, steps=plan.inversion_steps, label_source=label_source,
                           signals=tuple(signals + bn_signals), criterion=criterion, criterion_name=name)
