"""Adding a defense touches one module and one registry line (issue 34): the toy defense below is that module
(its schema, its ``Defense`` object with a load check, a training hook and privacy rows), and
``registry.register(DampDefense())`` is that line. It goes through config load, the load check, local training
(the hook is resolved and called, composed with ``[defense.training]``'s) and both server stacks' privacy rows
(Message API: ``DefenseTap``; SecAgg+: ``SecAggCuriousStrategy``), and a capture's ``defenses`` reads it back typed.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import nn

from fedsim.core.config import ConfigError, ExperimentConfig
from fedsim.core.defense import registry
from fedsim.core.defense.base import TRAINING_HOOK, Applier, Defense, RoundRelease, opt, training_hook
from fedsim.core.models import build_model
from fedsim.core.rows import PrivacyRow
from fedsim.core.runfolder import RunFolder


# ---- the toy defense: one module's worth -------------------------------------------------------------------
@dataclass(frozen=True)
class DampTable:
    """``[defense.damp]``: scale the training loss by a constant (a toy: FedSGD's update scales with it)."""

    enabled: bool = opt(False, doc="damp every client's loss")
    factor: float = opt(1.0, minimum=0.0, doc="the constant")


def damp_hook(t: DampTable, inner):
    """The training inside, with ``factor`` times the loss the outer hooks chose (plain cross-entropy if none)."""
    def train(model, x, y, *, step_loss=None, **kw):
        loss = step_loss or (lambda m, xb, yb: nn.functional.cross_entropy(m(xb), yb))
        return inner(model, x, y, step_loss=lambda m, xb, yb: t.factor * loss(m, xb, yb), **kw)
    return train


class DampDefense(Defense):
    table, schema = "damp", DampTable

    def appliers(self, t: DampTable) -> tuple[Applier, ...]:
        return (Applier(TRAINING_HOOK, "damp", 30, hook=damp_hook),)  # inside the loss of [defense.training] (10)

    def check(self, cfg, config_error) -> None:
        if cfg.train.algorithm != "fedsgd":
            raise config_error("defense.damp.enabled: the toy's update scales with the loss only under "
                               "train.algorithm = 'fedsgd'")

    def privacy_rows(self, cfg, t: DampTable, rnd: RoundRelease) -> list[PrivacyRow]:
        if not rnd.aggregated:
            return []
        return [PrivacyRow(round=rnd.server_round, epsilon=t.factor * rnd.released, delta=0.0, accountant="toy",
                           mechanism="damp")]


@pytest.fixture
def damp():
    defense = registry.register(DampDefense())  # the one registry line
    yield defense
    registry.unregister("damp")


def _cfg(**extra) -> ExperimentConfig:
    return ExperimentConfig().replace(**{"run.num_clients": 3, "train.min_train_nodes": 3,
                                         "train.algorithm": "fedsgd", **extra})


# ---- tests ---------------------------------------------------------------------------------------------------
def test_the_toy_loads_checks_and_is_described_by_its_module(damp):
    cfg = _cfg(**{"defense.damp.enabled": True, "defense.damp.factor": 0.5})
    assert cfg.defense.damp == DampTable(True, 0.5)
    assert list(registry.in_force(cfg.defense)) == ["damp"]
    assert registry.describe(cfg.defense) == ("damp", "damp")
    with pytest.raises(ConfigError, match=r"defense\.damp\.factr: unknown key; valid keys in \[defense\.damp\]"):
        _cfg(**{"defense.damp.factr": 0.5})
    with pytest.raises(ConfigError, match=r"defense\.damp\.factor: -1\.0 is below the minimum"):
        _cfg(**{"defense.damp.factor": -1.0})
    with pytest.raises(ConfigError, match=r"defense\.damp\.enabled: .*fedsgd"):  # its load check, from from_flat
        _cfg(**{"defense.damp.enabled": True, "train.algorithm": "fedavg"})


def _delta(section, seed: int = 3) -> dict[str, torch.Tensor]:
    x = torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.arange(8) % 3
    model = build_model("convnet", (1, 8, 8), 3, seed=0, width=2)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    registry.train_defended(section, model, x, y, algorithm="fedsgd", lr=0.1, epochs=1, batch_size=8, seed=seed,
                            server_round=1, client_id=0, max_steps=0)
    return {k: v - before[k] for k, v in model.state_dict().items() if v.is_floating_point()}


def test_the_toy_training_hook_is_resolved_and_called_inside_the_loss_hook(damp):
    """Known answer: one FedSGD step of ``factor * loss`` moves the weights ``factor`` times as far, with or
    without ``[defense.training]``'s label smoothing around it (the loss hook is outer, position 10 < 30)."""
    plain = _delta(_cfg().defense)
    damped = _delta(_cfg(**{"defense.damp.enabled": True, "defense.damp.factor": 0.5}).defense)
    smooth = _delta(_cfg(**{"defense.training.label_smoothing": 0.2}).defense)
    both = _delta(_cfg(**{"defense.damp.enabled": True, "defense.damp.factor": 0.5,
                          "defense.training.label_smoothing": 0.2}).defense)
    for k in plain:
        assert float(plain[k].abs().max()) > 0
        torch.testing.assert_close(damped[k], 0.5 * plain[k], rtol=1e-4, atol=1e-7)
        torch.testing.assert_close(both[k], 0.5 * smooth[k], rtol=1e-4, atol=1e-7)
    assert any(not torch.allclose(smooth[k], plain[k]) for k in plain)  # the smoothing really ran
    # a training hook named "module:attr" (no function attached) is imported where it is resolved
    assert training_hook(Applier(TRAINING_HOOK, f"{__name__}:damp_hook")) is damp_hook


def test_both_server_stacks_write_the_toys_privacy_rows(damp, tmp_path):
    from types import SimpleNamespace

    import numpy as np
    from flwr.app import ArrayRecord
    from flwr.common import Code, FitRes, Status, ndarrays_to_parameters

    from fedsim.core import messages as K
    from fedsim.server.defense_wiring import DefenseTap
    from fedsim.server.secagg import SecAggCuriousStrategy

    # Message API: DefenseTap asks the registry once per round; a lost round (no arrays) releases nothing
    cfg = _cfg(**{"defense.damp.enabled": True, "defense.damp.factor": 0.5})
    outcomes = iter([ArrayRecord(), None, ArrayRecord()])
    curious = SimpleNamespace(aggregate_train=lambda rnd, replies: (next(outcomes), None))
    plain_folder = RunFolder(tmp_path / "plain")
    tap = DefenseTap(curious, cfg, plain_folder)
    for rnd in (1, 2, 3):
        tap.aggregate_train(rnd, [])
    assert [(r.round, r.epsilon, r.mechanism) for r in plain_folder.rows(PrivacyRow)] == [(1, 0.5, "damp"),
                                                                                        (3, 1.0, "damp")]

    # SecAgg+: the legacy strategy under the workflow asks the same method after each unmasked aggregate
    cfg = _cfg(**{"defense.damp.enabled": True, "defense.damp.factor": 0.5, "defense.secagg.enabled": True})
    folder, captured = RunFolder(tmp_path / "secagg"), []
    strategy = SecAggCuriousStrategy(cfg, "7", [captured.append], folder, train_config={},
                                     evaluate_fn=lambda rnd, arrays: {})
    strategy.sent = dict(strategy.initial)
    vector = ndarrays_to_parameters([np.asarray(strategy.initial[n]) for n in strategy.vector_names])
    results = [(None, FitRes(Status(Code.OK, ""), vector, 8, {K.PARTITION_ID: pid})) for pid in range(3)]
    for rnd in (1, 2):
        strategy.aggregate_fit(rnd, results, [])
    assert [(r.round, r.epsilon) for r in folder.rows(PrivacyRow)] == [(1, 0.5), (2, 1.0)]
    # the capture's defenses are typed: the toy's table read back by its object
    assert len(captured) == 2 and captured[0].defenses.table("damp") == DampTable(True, 0.5)
    assert list(captured[0].defenses.in_force) == ["secagg", "damp"]
