"""An attack is one record (issue 20): a toy label method registered from test code alone reaches the rows and
the report; a typo in a method name fails at load in one line naming its key; every record has a kind, a dated
paper and ``applies``; a method that does not apply is a skipped row, a crash a failure."""

from __future__ import annotations

import re

import pytest
import torch

import fedsim.evaluation.attacking as attacking
from fedsim.attacks.inversion import INVERSION_METHODS
from fedsim.attacks.labels import LABEL_METHODS, register_label_method
from fedsim.attacks.records import KINDS, NEEDS, AttackMethod
from fedsim.core.captures import iter_captures, load_update
from fedsim.core.config import from_flat
from fedsim.core.errors import ConfigError
from fedsim.evaluation.attacking import attack_and_score
from fedsim.evaluation.preconditions import check_attack_inputs
from fedsim.core.models.zoo import classifier_layer
from fedsim.core.rows import AttackErrorRow, InversionRow, LabelRow, SkippedRow
from fedsim.core.runfolder import RunFolder
from fedsim.core.types import LabelRestoration
from tests.runfolder import TINY, make_run

pytestmark = pytest.mark.usefixtures("one_thread")


def _all_class_zero(model, gradients, num_samples, **options) -> LabelRestoration:
    """Toy label method (not a paper's, 2026): every one of the K samples is class 0."""
    counts = torch.zeros(classifier_layer(model).out_features, dtype=torch.long)
    counts[0] = num_samples
    return LabelRestoration("toy-zero", counts=counts, labels=torch.zeros(num_samples, dtype=torch.long))


@pytest.fixture
def toy_method():
    """``toy-zero`` registered through the public registration function, removed afterwards."""
    record = register_label_method(AttackMethod("toy-zero", "label", "a toy of this test (2026)",
                                                "every sample is class 0", _all_class_zero))
    yield record
    LABEL_METHODS.pop(record.name)


def test_a_toy_label_method_registered_from_test_code_reaches_rows_and_report(tmp_path, toy_method):
    from fedsim.lab.report.render import write_report

    cfg, run = make_run(tmp_path / "run", **{"attack.label_methods": "ilrg,toy-zero"})
    check_attack_inputs(cfg, run)  # the load-time check knows the new name
    folder = RunFolder(run)
    for path in iter_captures(run):
        for row in attack_and_score(path, cfg.to_flat(), run):
            folder.append(row)
    toy = [r for r in folder.rows() if isinstance(r, LabelRow) and r.method == "toy-zero"]
    assert len(toy) == 3 and all(r.ok for r in toy)
    assert all(r.restored_counts[0] == r.num_samples == 4 for r in toy)  # K = B = 4 under FedSGD
    assert all(r.true_counts is not None and r.label_lnacc is not None for r in toy)  # scored like the rest
    html = write_report(run).read_text(encoding="utf-8")  # the config dump names it anyway: look for its rows
    assert "labels recovered · toy-zero" in html and "<th>toy-zero</th>" in html


@pytest.mark.parametrize("key, value", [("attack.label_methods", "ilrg,ilgr"), ("attack.inversion", "igg")])
def test_a_typo_in_a_method_name_fails_at_load_in_one_line(tmp_path, key, value):
    cfg = from_flat({**TINY, "run.out_dir": str(tmp_path), key: value})  # the core config cannot see registries
    with pytest.raises(ConfigError) as err:
        check_attack_inputs(cfg, tmp_path)  # fedsim's preflight and the ServerApp's start both call it
    message = str(err.value)
    bad = value.split(",")[-1]
    assert "\n" not in message and message.startswith(f"{key}: {bad!r} is not one of "), message
    assert ("ilrg" if key == "attack.label_methods" else "none, analytic-fc") in message


@pytest.mark.parametrize("key, value", [("attack.label_methods", "ilrg,ilgr"), ("attack.inversion", "igg")])
def test_fedsim_check_refuses_the_typo_in_one_line_exit_2(tmp_path, capsys, key, value):
    from fedsim.core.config import to_toml
    from fedsim.lab.cli import main

    path = tmp_path / "x.toml"
    path.write_text(to_toml(from_flat({**TINY, "run.out_dir": str(tmp_path / "run")})))
    assert main(["check", str(path), "--set", f"{key}={value}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{key}: {value.split(',')[-1]!r} is not one of" in err[0], err


def test_the_workers_take_the_plan_built_once(tmp_path, monkeypatch):
    """The scheduler builds the plan when it starts; attacking a capture does not look the names up again."""
    from fedsim.server.scheduler import AttackScheduler

    cfg, run = make_run(tmp_path / "run")
    scheduler = AttackScheduler(cfg, run)

    def replanned(cfg):
        raise AssertionError("the attack of one capture re-planned the run's attack")

    monkeypatch.setattr(attacking, "plan_from_config", replanned)
    for path in iter_captures(run):
        scheduler(load_update(path))
    scheduler.close()
    rows = RunFolder(run).rows()
    assert len([r for r in rows if isinstance(r, LabelRow) and r.ok]) == 6, rows
    assert not [r for r in rows if isinstance(r, AttackErrorRow)]


def test_every_record_has_a_kind_a_dated_paper_needs_and_applies():
    records = [*LABEL_METHODS.values(), *INVERSION_METHODS.values()]
    assert len(records) >= 26
    for r in records:
        assert isinstance(r, AttackMethod) and r.kind in KINDS, r.name
        assert re.search(r"\b(19|20)\d\d\b", r.paper), f"{r.name}: {r.paper!r} names no year"
        assert r.summary and "\n" not in r.summary, r.name
        assert set(r.needs) <= set(NEEDS) and callable(r.applies) and callable(r.run), r.name
    assert {r.kind for r in LABEL_METHODS.values()} == {"label"}
    assert {n for n, r in INVERSION_METHODS.items() if r.kind == "generative"} == {"ggl", "gias"}
    assert LABEL_METHODS.needing("public split") == {"aux-nnls", "rlu"}  # one shape for "needs the public split"
    assert INVERSION_METHODS.needing("trained prior") == {"ggl", "gias"}
    assert INVERSION_METHODS.needing("DP-SGD clip norm") == {"ig-dpsgd"}
    # the pipeline reads a trace from every method but the closed form (and a user's plain tensor-returning run)
    assert {n for n, r in INVERSION_METHODS.items() if not r.traces} == {"analytic-fc"}


def test_a_record_without_a_year_or_of_the_wrong_kind_is_refused():
    with pytest.raises(ValueError, match="names no year"):
        AttackMethod("x", "label", "someone's method", "s", _all_class_zero)
    with pytest.raises(ValueError, match="label method"):
        INVERSION_METHODS.register(AttackMethod("x", "label", "a toy (2026)", "s", _all_class_zero))
    with pytest.raises(ValueError, match="already registered"):
        register_label_method(AttackMethod("ilrg", "label", "a toy (2026)", "s", _all_class_zero))


@pytest.mark.parametrize("overrides, reason", [
    ({"attack.inversion": "gradinversion"}, "BatchNorm"),  # record.applies: the update sent no BN statistics
    ({"attack.inversion": "ig-dpsgd"}, "DP-SGD"),  # a need the update cannot meet: DP-SGD was off
    ({"attack.inversion": "analytic-fc", "model.name": "lenet5"}, "nn.Linear"),  # the method refuses the model
])
def test_a_method_that_does_not_apply_is_a_skipped_row_not_an_error(tmp_path, overrides, reason):
    cfg, run = make_run(tmp_path / "run", **{"attack.inversion_steps": 2, **overrides})
    rows = attack_and_score(next(iter_captures(run)), cfg.to_flat(), run)
    skipped = [r for r in rows if isinstance(r, SkippedRow)]
    assert [r.method for r in skipped] == [overrides["attack.inversion"]] and reason in skipped[0].reason, rows
    assert not [r for r in rows if isinstance(r, InversionRow)]  # no ok: false inversion row
    assert all(r.ok for r in rows if isinstance(r, LabelRow))


def test_a_crash_is_still_a_failure(tmp_path):
    def crash(*args, **kwargs):
        raise RuntimeError("injected crash")

    register_label_method(AttackMethod("toy-crash", "label", "a toy of this test (2026)", "crashes", crash))
    try:
        cfg, run = make_run(tmp_path / "run", **{"attack.label_methods": "ilrg,toy-crash"})
        rows = attack_and_score(next(iter_captures(run)), cfg.to_flat(), run)
    finally:
        LABEL_METHODS.pop("toy-crash")
    assert [(type(r), r.method, r.ok) for r in rows] == [(LabelRow, "ilrg", True), (LabelRow, "toy-crash", False)]
    assert "injected crash" in rows[1].error
