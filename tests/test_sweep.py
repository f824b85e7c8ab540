"""``fedsim sweep`` with a fake runner (no federations): rows in order, summaries, plots and HTML."""

import json
from pathlib import Path

import pytest

from fedsim.lab.sweep import load_sweep, run_sweep
from fedsim.rows import InversionRow, LabelRow, PrivacyRow, UtilityRow
from fedsim.runfolder import RunFolder

ROOT = Path(__file__).resolve().parents[1]


def _fake_runner(calls):
    def runner(cfg, out, quiet):
        out.mkdir(parents=True, exist_ok=True)
        r = cfg.defense.topk_ratio or 1.0  # leakage falls with the ratio in this fake world
        rows = [UtilityRow(round=0, test_accuracy=0.1, test_loss=2.3),
                UtilityRow(round=2, test_accuracy=0.5 + 0.1 * r, test_loss=1.0)]
        for c in range(2):
            rows.append(LabelRow(round=1, client=c, ok=True, method="ilrg", label_leacc=r, label_lnacc=r / 2,
                                 defenses={"topk_ratio": cfg.defense.topk_ratio}))
            rows.append(LabelRow(round=1, client=c, ok=True, method="gi", label_leacc=0.0, label_lnacc=0.0))
            rows.append(InversionRow(round=1, client=c, method="ig", ok=True, psnr=10 + 10 * r, ssim=r))
        rows.append(InversionRow(round=1, client=2, method="ig", ok=False, error="x"))
        for row in rows:
            RunFolder(out).append(row)
        calls.append(cfg)
        return out
    return runner


def test_sweep_writes_one_row_per_setting_in_order(tmp_path):
    sweep = tmp_path / "sweep_x.toml"
    sweep.write_text(f'[sweep]\nbase = "{ROOT / "configs" / "defense_fedsgd.toml"}"\nname = "t"\n'
                     'parameter = "defense.topk_ratio"\nvalues = [0.0, 0.5, 0.1]\n'
                     '[attack]\nlabel_methods = "ilrg,gi"\n')
    calls = []
    rows = run_sweep(sweep, tmp_path / "out", runner=_fake_runner(calls))
    assert [c.defense.topk_ratio for c in calls] == [0.0, 0.5, 0.1]
    lines = [json.loads(x) for x in (tmp_path / "out" / "sweep.jsonl").read_text().splitlines()]
    assert lines == rows and [r["setting"] for r in lines] == [{"defense.topk_ratio": v} for v in (0.0, 0.5, 0.1)]
    assert lines[1]["test_accuracy"] == pytest.approx(0.55)
    assert lines[1]["label_leacc"] == pytest.approx(0.5)  # first label method only
    assert lines[1]["label_lnacc"] == pytest.approx(0.25)
    assert lines[2]["psnr"] == pytest.approx(11.0) and lines[2]["ssim"] == pytest.approx(0.1)
    assert lines[0]["epsilon"] is None and lines[0]["attacked_updates"] == 2
    for name in ("sweep_leakage_utility.png", "sweep_frontier.png", "sweep.html"):
        assert (tmp_path / "out" / name).stat().st_size > 1000
    assert "data:image/png;base64" in (tmp_path / "out" / "sweep.html").read_text()


def test_parallel_sweep_keeps_the_order(tmp_path):
    calls = []
    rows = run_sweep(ROOT / "configs" / "sweep_topk.toml", tmp_path, runner=_fake_runner(calls), parallel=2)
    assert [r["setting"]["defense.topk_ratio"] for r in rows] == [0.0, 0.5, 0.1, 0.01, 0.001]


@pytest.mark.parametrize("name", ["dp", "topk", "batch", "secagg"])
def test_sweep_presets_load(name):
    s = load_sweep(ROOT / "configs" / f"sweep_{name}.toml")
    assert len(s.settings) >= 2 and s.base.run.num_clients <= 4 and s.base.train.algorithm == "fedsgd"


def test_sweep_epsilon_comes_from_privacy_rows(tmp_path):
    from fedsim.config import ExperimentConfig
    from fedsim.lab.sweep import summarize

    for rnd, eps in ((1, 3.0), (2, 4.5)):
        RunFolder(tmp_path).append(PrivacyRow(round=rnd, epsilon=eps, delta=1e-5, accountant="opacus-rdp"))
    assert summarize(tmp_path, ExperimentConfig())["epsilon"] == 4.5


def test_bad_setting_fails_before_any_run(tmp_path):
    from fedsim.config import ConfigError

    sweep = tmp_path / "sweep_bad.toml"
    sweep.write_text('[sweep]\nparameter = "defense.topk_ratio"\nvalues = [0.5, 7.0]\n')
    with pytest.raises(ConfigError, match="topk_ratio"):
        load_sweep(sweep)


@pytest.mark.slow
def test_real_secagg_sweep_attacks_the_aggregate(tmp_path):
    """Two real federations (about 4 minutes on 2 cores): without and with SecAgg masks."""
    rows = run_sweep(ROOT / "configs" / "sweep_secagg.toml", tmp_path,
                     overrides={"run.num_rounds": 1, "attack.rounds": "1", "attack.inversion": "none"})
    assert [r["setting"] for r in rows] == [{"defense.secagg": False}, {"defense.secagg": True}]
    assert rows[0]["label_lnacc"] > 0.5  # plain FedSGD leaks labels
    masked = [json.loads(x) for x in (Path(rows[1]["run"]) / "metrics.jsonl").read_text().splitlines()]
    agg = [r for r in masked if r.get("kind") == "label" and r.get("client") == 9999]
    assert agg and agg[0]["num_samples"] == 24 and agg[0]["defenses"]["secagg"] is True
