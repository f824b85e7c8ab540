"""Issue 35 defect 8, at run time: every registered label and inversion method (the generative ones and the
decoder pick included; a method registered later, e.g. by a plugin module, is picked up by iterating the registries)
attacks a tiny capture with the ground-truth trap armed (``tests/ground_truth_trap.py``) and reads neither the
audit store nor any client's split. The trap is shown to catch planted readers that the old trap (ground-truth
readers replaced, audit files deleted: ``test_attack_path_never_opens_ground_truth``) let through.

A method that needs the public split gets it the sanctioned way, on the server before the trap is armed
(``data_spec``; the generative prior's images from ``generative_options``); the prior is trained inside the armed
attack (3 steps) from those images. A method that does not apply to the plain FedSGD capture (``ig-dpsgd``: DP-SGD
only) runs on the same capture marked as trained with DP-SGD.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import numpy as np
import pytest

from fedsim.attacks.inversion import INVERSION_METHODS
from fedsim.attacks.labels import LABEL_METHODS, restore_labels
from fedsim.attacks.pipeline import AttackPlan, attack_update
from fedsim.attacks.records import AttackMethod
from fedsim.core.captures import iter_captures, load_update
from fedsim.core.data.core import DATASETS
from fedsim.core.experiment import dataset, make_model
from fedsim.evaluation.attacking import data_spec, generative_options
from fedsim.server.defense_wiring import known_defenses
from tests.ground_truth_trap import Trap
from tests.runfolder import make_run

pytestmark = pytest.mark.usefixtures("one_thread")

STEPS = 2  # inversion steps: the trap watches what a method reads, not how well it inverts
PRIOR_STEPS = 3  # the generative prior, trained inside the armed attack from the server's public images
#: (method, extra inversion options): every registered inversion method, and the decoder pick of each
#: generative one (prior_archs: one prior per decoder, the lowest criterion kept)
INVERSIONS = [(name, {}) for name in sorted(INVERSION_METHODS)] + \
    [(name, {"prior_archs": "conv,mlp"}) for name in sorted(INVERSION_METHODS)
     if INVERSION_METHODS[name].kind == "generative"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A one-round FedSGD run (3 clients, digits, FCN-3, batch 4), its first capture, the server's model, a DP-SGD
    copy of the capture, and the source files of the dataset (recorded while the server loads it)."""
    cfg, run = make_run(tmp_path_factory.mktemp("trap") / "run")
    update = load_update(next(iter_captures(run)))
    dp = dataclasses.replace(update, defenses=known_defenses(cfg.replace(**{"defense.dp_sgd.enabled": True})))
    recorder = Trap(run)
    with recorder.record_sources():
        DATASETS[cfg.data.dataset](None)
    assert recorder.sources, "the dataset's loader opened no file: the trap would not know its sources"
    return cfg, run, update, dp, make_model(cfg), recorder.sources


@pytest.fixture(scope="module")
def bn_world(world):
    """The first client's FedSGD update on a ConvNet with BatchNorm, its buffers sent and returned (what a method
    that needs the running statistics reads); same run folder and dataset as ``world``."""
    from fedsim.core.experiment import client_data, local_seed
    from fedsim.core.training import train_locally
    from fedsim.core.types import ClientUpdate

    cfg, run, update, _, _, sources = world
    cfg = cfg.replace(**{"model.name": "convnet", "model.batchnorm": True, "model.width": 4})
    model = make_model(cfg)
    local = copy.deepcopy(model)
    x, y = client_data(cfg, 0, cfg.run.num_clients)
    res = train_locally(local, x, y, algorithm="fedsgd", lr=cfg.train.lr, epochs=1, batch_size=cfg.train.batch_size,
                        seed=local_seed(cfg.run.seed, 1, 0), server_round=1, client_id=0)
    params = dict(model.named_parameters())
    before, after = model.state_dict(), local.state_dict()
    bn_update = ClientUpdate(
        run_id="t", server_round=1, client_id=0, algorithm="fedsgd",
        weights_before={n: before[n].clone() for n in params}, weights_after={n: after[n].clone() for n in params},
        buffers_before={n: v.clone() for n, v in before.items() if n not in params},
        buffers_after={n: v.clone() for n, v in after.items() if n not in params},
        lr=cfg.train.lr, local_epochs=1, local_steps=res.steps, batch_size=cfg.train.batch_size, num_examples=len(res.ground_truth.all_labels))
    return cfg, run, bn_update, bn_update, model, sources


@pytest.fixture(scope="module")
def batch1_world(tmp_path_factory, world):
    """``world`` with a batch of one (iDLG's label trick needs it)."""
    cfg, run = make_run(tmp_path_factory.mktemp("trap1") / "run", **{"train.batch_size": 1})
    update = load_update(next(iter_captures(run)))
    return cfg, run, update, update, make_model(cfg), world[-1]


def _run_armed(world, monkeypatch, plan: AttackPlan, method: str, request=None):
    """Attack with ``plan`` under the trap until ``method``'s own code ran (its ``run`` was entered): on the plain
    capture, on its DP-SGD copy, then on the BatchNorm ConvNet's (``bn_world``) and on a batch of one
    (``batch1_world``) while ``applies`` or a need keeps it from running. (trap, results, whether it ran)."""
    registry = INVERSION_METHODS if method == plan.inversion else LABEL_METHODS
    record, calls = registry[method], []

    def counted(*args, **kwargs):
        calls.append(method)
        return record.run(*args, **kwargs)

    monkeypatch.setitem(registry, method, dataclasses.replace(record, run=counted))
    for name in ("world", "bn_world", "batch1_world"):
        if name != "world":
            world = request.getfixturevalue(name)
        trap, results = _run_world(world, monkeypatch, plan, calls)
        if trap.violations or calls or request is None:
            break
    return trap, results, bool(calls)


def _run_world(world, monkeypatch, plan: AttackPlan, calls: list):
    cfg, run, update, dp, model, sources = world
    spec = data_spec(cfg, plan)  # server side, unarmed: the public split when a method needs it
    if plan.inversion and "trained prior" in INVERSION_METHODS[plan.inversion].needs:
        auto = cfg.replace(**{"attack.prior_autotrain": True, "attack.prior_path": str(run / "trap_priors" / "p.st")})
        plan = dataclasses.replace(plan, inversion_options={**generative_options(auto, run), "prior_steps": PRIOR_STEPS,
                                                            **plan.inversion_options})
    trap = Trap(run)
    trap.sources = set(sources)
    for capture in (update, dp):
        with trap.armed_for(monkeypatch):
            results = attack_update(capture, lambda: copy.deepcopy(model), plan, spec)
        if calls or trap.violations:
            break
    return trap, results


def _ran(result, ran: bool) -> bool:
    """The method's code ran to an answer: a result, or its own finding that the update does not suit it
    (``AttackNotApplicable`` raised inside ``run``, e.g. SPEAR finding too few sparse directions)."""
    return ran and (result.ok or result.not_applicable)


@pytest.mark.parametrize("method", sorted(LABEL_METHODS))
def test_every_label_method_runs_without_ground_truth(world, monkeypatch, request, method):
    trap, results, ran = _run_armed(world, monkeypatch, AttackPlan(label_methods=(method,)), method, request)
    assert not trap.violations, trap.violations
    (result,) = results
    assert _ran(result, ran), f"{method} did not run under the trap: {result.error}"


@pytest.mark.parametrize("method,options", INVERSIONS,
                         ids=[m + ("+" + ",".join(f"{k}={v}" for k, v in o.items()) if o else "") for m, o in INVERSIONS])
def test_every_inversion_method_runs_without_ground_truth(world, monkeypatch, request, method, options):
    plan = AttackPlan(label_methods=("ilrg",), inversion=method, inversion_steps=STEPS, inversion_options=options)
    trap, results, ran = _run_armed(world, monkeypatch, plan, method, request)
    assert not trap.violations, trap.violations
    inversion = results[-1]
    assert inversion.method == method and _ran(inversion, ran), f"{method} did not run under the trap: {inversion.error}"
    if options.get("prior_archs"):
        assert any("decoder" in s for s in inversion.signals), inversion.signals  # the pick ran


# ---- planted violations: each is caught by this trap; the old one (readers replaced, audit files deleted)
# let every one through ------------------------------------------------------------------------------------
def _audit_listing(run: Path, cfg) -> None:
    sorted((run / "audit").rglob("*.safetensors"))


def _audit_safetensors(run: Path, cfg) -> None:
    from safetensors.torch import load_file

    for path in (run / "audit").glob("round_*/client_*.safetensors"):
        load_file(path)


def _train_split_by_name(run: Path, cfg) -> None:
    from fedsim.core.data import load_dataset

    getattr(load_dataset(cfg.data.dataset), "train_" + "x")[:4]


def _train_split_of_the_store(run: Path, cfg) -> None:
    ds = dataset(cfg)  # the server's cached, memory-mapped store (opened before the trap was armed)
    ds.train_y[:4]


def _store_file(run: Path, cfg) -> None:
    np.load(dataset(cfg).folder / "train_x.npy", mmap_mode="r")[:4]


def _raw_loader(run: Path, cfg) -> None:
    from fedsim.core import data

    data.sources.load_digits_dataset()


PLANTED = [_audit_listing, _audit_safetensors, _train_split_by_name, _train_split_of_the_store, _store_file,
           _raw_loader]


def _planted_method(read, run, cfg) -> AttackMethod:
    def run_method(model, gradients, num_samples, **options):
        read(run, cfg)
        return restore_labels("ilrg", model=model, gradients=gradients, num_samples=num_samples, **options)
    return AttackMethod(f"planted-{read.__name__}", "label", "a planted reader (2026)", "reads what it must not",
                        run_method)


@pytest.mark.parametrize("read", PLANTED, ids=[f.__name__.strip("_") for f in PLANTED])
def test_the_trap_catches_a_planted_reader(world, monkeypatch, read):
    cfg, run, *_ = world
    dataset(cfg).test_x  # noqa: B018 - the server has opened its store (as data_spec does), before the trap
    record = _planted_method(read, run, cfg)
    monkeypatch.setitem(LABEL_METHODS, record.name, record)
    trap, (result,), ran = _run_armed(world, monkeypatch, AttackPlan(label_methods=(record.name,)), record.name)
    assert ran and trap.violations and not result.ok and "ground-truth trap" in result.error, (trap.violations, result)


@pytest.mark.parametrize("read", PLANTED, ids=[f.__name__.strip("_") for f in PLANTED])
def test_the_old_trap_let_the_planted_reader_through(world, monkeypatch, read, tmp_path):
    """The trap of test_attack_path_never_opens_ground_truth before issue 35: the three readers of
    fedsim.evaluation.truth replaced and the audit files deleted (here: of a copy of the run)."""
    import shutil

    import fedsim.evaluation.truth as truth_module

    cfg, run, update, _, model, _ = world
    copy_run = Path(shutil.copytree(run, tmp_path / "run"))
    for name in ("read_ground_truth", "has_ground_truth", "truth_for"):
        monkeypatch.setattr(truth_module, name, lambda *a, **k: (_ for _ in ()).throw(AssertionError("opened")))
    for path in (copy_run / "audit").rglob("*.safetensors"):
        path.unlink()
    record = _planted_method(read, copy_run, cfg)
    monkeypatch.setitem(LABEL_METHODS, record.name, record)
    (result,) = attack_update(update, lambda: copy.deepcopy(model), AttackPlan(label_methods=(record.name,)),
                              data_spec(cfg, AttackPlan(label_methods=(record.name,))))
    assert result.ok  # not caught: the planted reader read the clients' data and the attack succeeded
