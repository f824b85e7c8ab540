"""``fedsim sweep`` with a fake runner (no federations): settings x seeds, the attacker's pick per setting (and the
oracle upper bound) with its 95 % interval, epsilon for every DP kind, labels in words, the cache, plots and HTML."""

import json
import math
from pathlib import Path

import pytest

from fedsim.lab.sweep import load_sweep, run_sweep, t_interval
from fedsim.core.rows import InversionRow, LabelRow, LostRoundRow, PrivacyRow, UtilityRow
from fedsim.core.runfolder import RunFolder

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "configs" / "defense_fedsgd.toml"


def _fake_runner(calls):
    """Leakage falls with the top-k ratio; 'gi' beats 'ilrg' only at ratio 0.5; seeds move every number."""
    def runner(cfg, out, quiet):
        out.mkdir(parents=True, exist_ok=True)
        folder = RunFolder(out)
        folder.config.write_text("")  # a real run writes its config; the cache must not trust this one
        r = cfg.defense.update.topk_ratio or 1.0
        s = cfg.run.seed
        rows = [UtilityRow(round=0, test_accuracy=0.1, test_loss=2.3),
                UtilityRow(round=2, test_accuracy=0.5 + 0.1 * r + 0.01 * s, test_loss=1.0,
                           heldout_accuracy=0.4 + 0.1 * r + 0.02 * s)]
        for c in range(2):
            rows.append(LabelRow(round=1, client=c, ok=True, method="ilrg", label_leacc=r, label_lnacc=r / 2 + 0.01 * s))
            gi = 0.9 if r == 0.5 else 0.0
            rows.append(LabelRow(round=1, client=c, ok=True, method="gi", label_leacc=gi, label_lnacc=gi))
            rows.append(InversionRow(round=1, client=c, method="ig", ok=True, psnr=10 + 10 * r + s, ssim=r))
        rows.append(InversionRow(round=1, client=2, method="ig", ok=False, error="x"))
        if cfg.defense.central_dp.clipping != "off":
            rows.append(LostRoundRow(round=2, reason="every reply failed"))
        for row in rows:
            folder.append(row)
        folder.done.write_text("")
        calls.append(cfg)
        return out
    return runner


def _sweep_file(tmp_path, body):
    path = tmp_path / "sweep_x.toml"
    path.write_text(f'[sweep]\nbase = "{BASE}"\nname = "t"\n{body}\n[attack]\nlabel_methods = "ilrg,gi"\n')
    return path


def test_a_point_records_the_attackers_pick_the_oracle_and_their_intervals(tmp_path):
    sweep = _sweep_file(tmp_path, 'parameter = "defense.update.topk_ratio"\nvalues = [0.0, 0.5, 0.1]\n'
                                  'seeds = [0, 1, 2]')
    calls = []
    rows = run_sweep(sweep, tmp_path / "out", runner=_fake_runner(calls), reports=False)
    assert len(calls) == 9 and sorted({c.run.seed for c in calls}) == [0, 1, 2]
    lines = [json.loads(x) for x in (tmp_path / "out" / "sweep.jsonl").read_text().splitlines()]
    assert [r["label"] for r in lines] == ["no defense", "top-k 50%", "top-k 10%"]
    p = lines[1]
    # the server acts on the first configured label method (no inversion used labels here) ...
    assert all(r["label_best"] == "ilrg" for r in lines) and p["label_pick_rule"] == "first configured label method"
    assert p["label_lnacc"] == pytest.approx(0.26)  # ilrg's own LnAcc (0.25 + 0.01 s over seeds 0, 1, 2)
    # ... while the best by ground truth, gi at ratio 0.5 only, is the labelled oracle upper bound
    assert p["label_oracle"] == "gi" and p["label_lnacc_oracle"] == pytest.approx(0.9)
    assert lines[0]["label_oracle"] == "ilrg" and lines[2]["label_oracle"] == "ilrg"
    assert p["label_by_method"]["ilrg"] == pytest.approx(0.25 + 0.01)
    # PSNR over seeds 0, 1, 2 = 15, 16, 17: mean 16, t(0.975, 2) * 1 / sqrt(3) = 2.484
    assert p["inversion_best"] == "ig" and p["psnr"] == pytest.approx(16.0)
    assert p["inversion_pick_rule"] == "first configured method (no criterion recorded)"  # the rows have none
    assert p["psnr_oracle"] == pytest.approx(16.0)  # one method: the oracle is that method
    assert p["psnr_ci"] == pytest.approx([16 - 2.4841, 16 + 2.4841], abs=1e-3)
    assert p["psnr_values"] == [15.0, 16.0, 17.0] and p["interval"].startswith("95% Student-t")
    # test accuracy over seeds 0, 1, 2 = 0.55, 0.56, 0.57: mean 0.56, t(0.975, 2) * 0.01 / sqrt(3) = 0.02484
    assert p["test_accuracy"] == pytest.approx(0.56)
    assert p["test_accuracy_ci"] == pytest.approx([0.56 - 0.024841, 0.56 + 0.024841], abs=1e-5)
    assert p["heldout_accuracy_values"] == pytest.approx([0.45, 0.47, 0.49])  # the untuned half, per seed
    assert p["epsilon"] is None and len(p["runs"]) == 3 and p["attacked_updates"] == 6
    for name in ("sweep_settings.png", "sweep_frontier.png", "sweep.html"):
        assert (tmp_path / "out" / name).stat().st_size > 1000
    page = (tmp_path / "out" / "sweep.html").read_text()
    assert "top-k 50%" in page and "data:image/png;base64" in page
    assert 'href="update.topk_ratio=0.5/seed_2/report.html"' in page  # folders named by their setting


def test_cache_skips_finished_runs_of_the_same_config(tmp_path):
    sweep = _sweep_file(tmp_path, 'parameter = "defense.update.topk_ratio"\nvalues = [0.0, 0.1]\nseeds = [0, 1]')
    calls = []

    def real_config_runner(cfg, out, quiet):  # writes config.toml the way prepare_run_dir does
        from fedsim.core.config import to_toml

        _fake_runner(calls)(cfg, out, quiet)
        RunFolder(out).config.write_text(to_toml(cfg.replace(**{"run.out_dir": str(out.resolve())})))
        return out

    run_sweep(sweep, tmp_path / "out", runner=real_config_runner, reports=False)
    assert len(calls) == 4
    rows = run_sweep(sweep, tmp_path / "out", runner=real_config_runner, reports=False)
    assert len(calls) == 4 and len(rows) == 2  # nothing ran again
    run_sweep(sweep, tmp_path / "out", runner=real_config_runner, reports=False,
              overrides={"train.lr": 0.05})
    assert len(calls) == 8  # a different config is a miss
    run_sweep(sweep, tmp_path / "out", runner=real_config_runner, reports=False,
              overrides={"train.lr": 0.05, "attack.backend": "ray", "attack.num_cpus": 1.0})
    assert len(calls) == 8  # where the attacks ran is not what they compute: still a hit
    wider = _sweep_file(tmp_path, 'parameter = "defense.update.topk_ratio"\nvalues = [0.0, 0.1]\nseeds = [0, 1, 2]')
    rows = run_sweep(wider, tmp_path / "out", runner=real_config_runner, reports=False, existing_only=True,
                     overrides={"train.lr": 0.05})  # the folders now hold the lr 0.05 runs
    assert len(calls) == 8 and [r["seeds_run"] for r in rows] == [2, 2]  # a partial sweep's summary


def test_parallel_sweep_keeps_the_order(tmp_path):
    calls = []
    rows = run_sweep(ROOT / "configs" / "sweep_topk.toml", tmp_path, runner=_fake_runner(calls), parallel=2,
                     reports=False)
    assert [r["setting"]["defense.update.topk_ratio"] for r in rows] == [0.0, 0.5, 0.1, 0.01, 0.001]


def test_settings_tables_label_in_words_and_epsilon_for_every_dp_kind(tmp_path):
    from fedsim.core.accounting import central_dp_epsilon, local_dp_epsilon

    sweep = _sweep_file(tmp_path, "seeds = [0]\n"
                        '[[sweep.settings]]\nset = {}\n'
                        '[[sweep.settings]]\nset = { "defense.central_dp.clipping" = "server", '
                        '"defense.central_dp.noise_multiplier" = 0.5 }\n'
                        '[[sweep.settings]]\nset = { "defense.local_dp.enabled" = true, '
                        '"defense.local_dp.epsilon" = 50.0 }\n'
                        '[[sweep.settings]]\nfamily = "DP-SGD"\nset = { "defense.dp_sgd.enabled" = true, '
                        '"defense.dp_sgd.noise_multiplier" = 0.0 }\n')
    rows = run_sweep(sweep, tmp_path / "out", runner=_fake_runner([]), reports=False)
    assert [r["label"] for r in rows] == ["no defense", "central DP z 0.5, clip 1", "local DP eps 50/round, clip 1",
                                          "DP-SGD sigma 0, clip 1"]
    assert rows[0]["epsilon"] is None
    # central DP: 2 rounds ran, round 2 was lost -> one release
    assert rows[1]["epsilon"] == pytest.approx(central_dp_epsilon(0.5, 1, 1e-5)) and rows[1]["delta"] == 1e-5
    assert rows[2]["epsilon"] == pytest.approx(local_dp_epsilon(50.0, 1e-5, 2, 1e-5))
    assert math.isinf(rows[3]["epsilon"])  # no noise, no privacy
    assert "eps inf" in (tmp_path / "out" / "sweep.html").read_text()


def test_epsilon_from_privacy_rows_wins(tmp_path):
    from fedsim.core.config import ExperimentConfig
    from fedsim.lab.sweep import summarize

    for rnd, eps in ((1, 3.0), (2, 4.5)):
        RunFolder(tmp_path).append(PrivacyRow(round=rnd, epsilon=eps, delta=1e-5, accountant="opacus-rdp"))
    s = summarize(tmp_path, ExperimentConfig())
    assert s["epsilon"] == 4.5 and s["accountant"] == "opacus-rdp"


def test_t_interval():
    assert t_interval([1.0]) == (1.0, None, None)
    m, lo, hi = t_interval([1.0, 2.0, 3.0, 4.0])
    assert m == 2.5 and hi - m == pytest.approx(3.1824 * math.sqrt(5 / 3) / 2, rel=1e-4)
    assert m - lo == pytest.approx(hi - m)


def test_t_interval_covers_the_true_mean_at_its_level_and_shrinks_with_more_seeds():
    """Seeded simulation, N(3, 2^2): the 95 % interval holds the true mean 3 in 95 % of 2000 draws (3 standard
    errors: +-0.015) at 3, 5 and 20 values; its width falls like t(n-1) / sqrt(n) (expected 20 vs 5 values: 0.40)."""
    import random

    rng = random.Random(0)
    width = {}
    for n in (3, 5, 20):
        hits, widths = 0, []
        for _ in range(2000):
            _, lo, hi = t_interval([rng.gauss(3.0, 2.0) for _ in range(n)])
            hits += lo <= 3.0 <= hi
            widths.append(hi - lo)
        assert abs(hits / 2000 - 0.95) < 0.015, (n, hits)
        width[n] = sum(widths) / len(widths)
    assert width[3] > width[5] > width[20]
    assert width[20] / width[5] == pytest.approx(0.40, abs=0.03)
    _, lo90, hi90 = t_interval([1.0, 2.0, 3.0, 4.0], level=0.90)
    _, lo95, hi95 = t_interval([1.0, 2.0, 3.0, 4.0])
    assert hi90 - lo90 < hi95 - lo95  # a lower level, a narrower interval


@pytest.mark.parametrize("name", ["dp", "topk", "batch", "frontier"])
def test_sweep_presets_load(name):
    s = load_sweep(ROOT / "configs" / f"sweep_{name}.toml")
    assert len(s.settings) >= 2 and s.base.run.num_clients <= 4 and s.base.train.algorithm == "fedsgd"
    assert all(st.label and "{" not in st.label for st in s.settings)


def test_bad_setting_fails_before_any_run(tmp_path):
    from fedsim.core.config import ConfigError

    sweep = tmp_path / "sweep_bad.toml"
    sweep.write_text('[sweep]\nparameter = "defense.update.topk_ratio"\nvalues = [0.5, 7.0]\n')
    with pytest.raises(ConfigError, match="topk_ratio"):
        load_sweep(sweep)
    sweep.write_text('[sweep]\nreplay = ["igg"]\n[[sweep.settings]]\nset = {}\n')
    with pytest.raises(ConfigError, match="igg"):
        load_sweep(sweep)


@pytest.mark.slow
def test_real_secagg_sweep_attacks_the_aggregate(tmp_path):
    """Two real federations (about 4 minutes on 2 cores): without and with secure aggregation."""
    rows = run_sweep(ROOT / "configs" / "sweep_secagg.toml", tmp_path,
                     overrides={"run.num_rounds": 1, "attack.rounds": "1", "attack.inversion": "none",
                                "attack.label_methods": "ilrg"})
    assert [r["label"] for r in rows] == ["no defense", "SecAgg+"]
    assert rows[0]["label_lnacc"] > 0.5  # plain FedSGD leaks labels
    masked = [json.loads(x) for x in (Path(rows[1]["runs"][0]["run"]) / "metrics.jsonl").read_text().splitlines()]
    agg = [r for r in masked if r.get("kind") == "label" and r.get("client") == 9999]
    assert agg and agg[0]["num_samples"] == 24


def test_a_replay_cut_short_is_redone_and_counted_once(tmp_path):
    from fedsim.core.config import ExperimentConfig
    from fedsim.lab.sweep import summarize
    from fedsim.lab.sweep.execute import replayed

    folder = RunFolder(tmp_path)
    for c in (0, 1):
        path = folder.capture(1, c)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    cfg = ExperimentConfig().replace(**{"attack.rounds": "1"})
    folder.append(InversionRow(round=1, client=0, method="ggl", ok=True, psnr=9.0, replay=True))
    assert replayed(tmp_path, cfg) == set()  # client 1 is missing: replay again
    for c, psnr in ((0, 11.0), (1, 13.0)):
        folder.append(InversionRow(round=1, client=c, method="ggl", ok=True, psnr=psnr, replay=True))
    assert replayed(tmp_path, cfg) == {"ggl"}
    assert summarize(tmp_path, cfg)["inversion_methods"]["ggl"]["psnr"] == pytest.approx(12.0)  # last row each


def test_only_runs_the_named_settings_and_summarises_the_rest(tmp_path):
    sweep = _sweep_file(tmp_path, 'parameter = "defense.update.topk_ratio"\nvalues = [0.0, 0.5, 0.1]\nseeds = [0]')
    calls = []
    run_sweep(sweep, tmp_path / "out", runner=_fake_runner(calls), reports=False, only={1})
    assert [c.defense.update.topk_ratio for c in calls] == [0.5]


def test_central_evaluation_reports_the_half_no_tuning_reads(tmp_path):
    """The utility row carries the accuracy on the even half of the test split (the tuner selects on the odd
    half), next to the whole-split accuracy; both equal a direct evaluation of the same model."""
    import torch
    from flwr.app import ArrayRecord

    from fedsim.core.config import load_config
    from fedsim.core.experiment import HELDOUT, VALIDATION, make_model, test_data
    from fedsim.core.training import evaluate
    from fedsim.server.app import central_evaluation

    cfg = load_config(ROOT / "configs" / "smoke.toml", {"run.out_dir": str(tmp_path)})
    torch.manual_seed(3)
    model = make_model(cfg)
    folder = RunFolder(tmp_path)
    central_evaluation(cfg, folder)(1, ArrayRecord(model.state_dict()))
    (row,) = folder.rows(UtilityRow)
    x, y = test_data(cfg)
    assert row.test_accuracy == evaluate(model, x, y)[0]
    assert row.heldout_accuracy == evaluate(model, x[HELDOUT], y[HELDOUT])[0]
    n_even, n_odd = len(y[HELDOUT]), len(y[VALIDATION])
    odd = evaluate(model, x[VALIDATION], y[VALIDATION])[0]
    assert row.test_accuracy == pytest.approx((row.heldout_accuracy * n_even + odd * n_odd) / (n_even + n_odd))
