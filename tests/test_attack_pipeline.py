"""The attack pipeline: scored rows for every capture, failures logged and scored as failed, ground truth
never read by the attack path, offline replay of saved captures."""

import json
import logging
import time

import pytest
import torch

import fedsim.attacks.pipeline as pipeline
import fedsim.evaluation.truth as truth_module
from fedsim.evaluation.attacking import attack_and_score, data_spec, plan_from_config
from fedsim.core.captures import iter_captures, load_update
from fedsim.core.experiment import make_model
from fedsim.lab.replay import replay_attacks
from fedsim.core.results import read_jsonl
from fedsim.server.scheduler import AttackScheduler
from tests.runfolder import make_run


def test_rows_are_scored_for_every_capture(tmp_path):
    cfg, run = make_run(tmp_path / "run")
    rows = [r.to_json() for p in iter_captures(run) for r in attack_and_score(p, cfg.to_flat(), run)]
    labels = [r for r in rows if r["kind"] == "label"]
    assert len(labels) == 3 * 2 and all(r["ok"] for r in labels)
    ilrg = [r for r in labels if r["method"] == "ilrg"]
    assert all(r["label_lnacc"] == 1.0 for r in ilrg), ilrg  # batch 4 on an untrained FCN: exact counts
    assert all(sum(r["true_counts"]) == 4 for r in ilrg)


def test_attack_path_never_opens_ground_truth(tmp_path, monkeypatch):
    """Labels and an inversion give identical output with the audit store present, and with it deleted and
    every ground-truth reader booby-trapped."""
    cfg, run = make_run(tmp_path / "run", **{"attack.inversion": "ig", "attack.inversion_steps": 3})
    update = load_update(next(iter_captures(run)))
    spec, plan = data_spec(cfg), plan_from_config(cfg)
    assert plan.inversion == "ig"
    torch.manual_seed(0)
    with_truth = pipeline.attack_update(update, lambda: make_model(cfg), plan, spec)

    def forbidden(*args, **kwargs):
        raise AssertionError("the attack path opened the ground-truth store")

    monkeypatch.setattr(truth_module, "read_ground_truth", forbidden)
    monkeypatch.setattr(truth_module, "has_ground_truth", forbidden)
    monkeypatch.setattr(truth_module, "truth_for", forbidden)
    for path in (run / "audit").rglob("*.safetensors"):
        path.unlink()
    torch.manual_seed(0)
    without = pipeline.attack_update(update, lambda: make_model(cfg), plan, spec)
    assert [(r.attack, r.method, r.ok) for r in with_truth] == [(r.attack, r.method, r.ok) for r in without]
    assert [r.attack for r in without].count("inversion") == 1 and all(r.ok for r in without)
    for a, b in zip(with_truth, without):
        assert torch.equal(a.labels, b.labels)
        if a.attack == "inversion":
            assert torch.equal(a.reconstruction, b.reconstruction)
        else:
            assert torch.equal(a.restoration.counts, b.restoration.counts)


def test_failing_attack_is_logged_scored_as_failed_and_others_continue(tmp_path, monkeypatch, caplog):
    cfg, run = make_run(tmp_path / "run")
    real = pipeline.restore_labels

    def flaky(method, **kwargs):
        if getattr(method, "name", method) == "gi":  # the pipeline hands the record it looked up
            raise RuntimeError("injected attack crash")
        return real(method, **kwargs)

    monkeypatch.setattr(pipeline, "restore_labels", flaky)
    scheduler = AttackScheduler(cfg, run)
    with caplog.at_level(logging.WARNING, logger="fedsim.server"):
        for path in iter_captures(run):
            scheduler(load_update(path))
        scheduler.close()
    rows = [r for r in read_jsonl(run / "metrics.jsonl")]
    failed = [r for r in rows if not r.get("ok")]
    assert len(failed) == 3 and all("injected attack crash" in r["error"] for r in failed)
    assert sum(1 for r in rows if r.get("ok") and r["method"] == "ilrg") == 3
    assert "1 failed" in caplog.text


def test_scheduler_budget_and_selection(tmp_path):
    cfg, run = make_run(tmp_path / "run", **{"attack.clients": "0,2", "attack.max_attacks": 1})
    scheduler = AttackScheduler(cfg, run)
    for path in iter_captures(run):
        scheduler(load_update(path))
    scheduler.close()
    assert {r["client"] for r in read_jsonl(run / "metrics.jsonl")} == {0}


def test_replay_appends_rows_and_takes_only_attack_overrides(tmp_path):
    cfg, run = make_run(tmp_path / "run")
    assert replay_attacks(run, {"attack.label_methods": "rlg"}, quiet=True) == 3
    rows = list(read_jsonl(run / "metrics.jsonl"))
    assert len(rows) == 3 and all(r["method"] == "rlg" and r["replay"] for r in rows)
    from fedsim.core.config import ConfigError
    with pytest.raises(ConfigError, match="attack"):
        replay_attacks(run, {"train.lr": "1"})


def test_public_split_reaches_the_label_methods_that_need_it(tmp_path):
    """aux-nnls gets the server's public split (the held-out test half, never client data) and restores the
    counts; without such a method the split is not even loaded."""
    from fedsim.attacks.generative import aux_split
    from fedsim.core.experiment import dataset

    cfg, run = make_run(tmp_path / "run", **{"attack.label_methods": "aux-nnls"})
    spec = data_spec(cfg)
    x_pub, y_pub = aux_split(dataset(cfg))
    assert spec.public_aux is not None and torch.equal(spec.public_aux[0], x_pub)
    assert data_spec(cfg.replace(**{"attack.label_methods": "ilrg"})).public_aux is None
    rows = [r for p in iter_captures(run) for r in attack_and_score(p, cfg.to_flat(), run)]
    assert len(rows) == 3 and all(r.ok and r.method == "aux-nnls" for r in rows)
    assert all(r.label_lnacc == 1.0 for r in rows)  # batch 4 on an untrained FCN


def test_an_attack_that_does_not_apply_is_skipped_not_failed(tmp_path):
    """An update covering more images than attack.max_inversion_images is a `skipped` row with the reason; the
    label attacks on the same update still run."""
    from fedsim.core.rows import SkippedRow

    cfg, run = make_run(tmp_path / "run", **{"attack.inversion": "ig", "attack.max_inversion_images": 2,
                                             "attack.label_methods": "ilrg"})
    rows = attack_and_score(next(iter_captures(run)), cfg.to_flat(), run)
    kinds = [type(r).__name__ for r in rows]
    assert kinds == ["LabelRow", "SkippedRow"]
    skipped = rows[1]
    assert isinstance(skipped, SkippedRow) and skipped.method == "ig"
    assert "max_inversion_images=2" in skipped.reason and rows[0].ok


def test_attack_timeout_counts_from_start_not_queue_time(tmp_path, monkeypatch):
    """Three queued attacks of ~1 s each on one worker, attack.timeout 1.8 s: each finishes within its own budget
    (the third waited ~2 s in the queue, which used to count and time it out)."""
    from concurrent.futures import ThreadPoolExecutor

    import fedsim.server.scheduler as sched

    cfg, run = make_run(tmp_path / "run", **{"attack.timeout": 1.8, "attack.queue_size": 8})

    def slow_attack(path, flat, run_dir, plan=None, *more, **kw):
        time.sleep(1.0)
        return []

    monkeypatch.setattr(sched, "attack_and_score", slow_attack)
    scheduler = AttackScheduler(cfg, run)
    scheduler.pool = ThreadPoolExecutor(max_workers=1)
    for path in iter_captures(run):
        scheduler(load_update(path))
    scheduler.close()
    assert not [r for r in read_jsonl(run / "metrics.jsonl") if r["kind"] == "attack_error"]


def test_inversion_tv_reaches_the_engine_and_changes_the_reconstruction(tmp_path):
    """attack.inversion_tv overrides the method's TV weight (other regularizers kept); -1 keeps the default."""
    cfg, run = make_run(tmp_path / "run", **{"attack.inversion": "ig", "attack.inversion_steps": 5})
    assert plan_from_config(cfg).inversion_options == {}
    low = cfg.replace(**{"attack.inversion_tv": 0.01})
    assert plan_from_config(low).inversion_options == {"regularizers": {"tv": 0.01}}
    update = load_update(next(iter_captures(run)))
    spec = data_spec(cfg)
    default = pipeline.attack_update(update, lambda: make_model(cfg), plan_from_config(cfg), spec)[-1]
    smooth = pipeline.attack_update(update, lambda: make_model(cfg), plan_from_config(low), spec)[-1]
    assert default.ok and smooth.ok and not torch.equal(default.reconstruction, smooth.reconstruction)


def test_replaying_an_attack_that_does_not_apply_writes_replay_skips_the_sweep_counts_as_done(tmp_path):
    """`fedsim attack` with ig-dpsgd on a run without DP-SGD: one skipped row per update, marked replay (it used to
    crash on the row type), so the sweep's replayed() does not attempt it again; a live skip of the same method
    (queue full) does not count as a replay."""
    from fedsim.lab.sweep.execute import replayed
    from fedsim.core.rows import SkippedRow
    from fedsim.core.runfolder import RunFolder

    cfg, run = make_run(tmp_path / "run")
    assert replayed(run, cfg) == set()
    RunFolder(run).append(SkippedRow(round=1, client=0, reason="attack queue full", method="ig-dpsgd"))
    assert replayed(run, cfg) == set()
    assert replay_attacks(run, {"attack.inversion": "ig-dpsgd", "attack.label_methods": "rlg"}, quiet=False) == 3
    skips = [r for r in read_jsonl(run / "metrics.jsonl") if r["kind"] == "skipped" and r.get("replay")]
    assert len(skips) == 3 and all("DP-SGD" in r["reason"] for r in skips)
    assert "ig-dpsgd" in replayed(run, cfg)
