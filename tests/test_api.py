"""The Python API (issue 22): fedsim.run / load_run / attack / sweep, the Run object's typed rows and tidy
DataFrames. A real federation through the API is in tests/test_byo.py; these tests use a written run folder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import fedsim
from fedsim.core.config import ConfigError, ExperimentConfig, to_toml
from fedsim.core.errors import RunFolderError
from fedsim.core.rows import InversionRow, LabelRow, UtilityRow
from fedsim.core.runfolder import RunFolder

ROOT = Path(__file__).resolve().parents[1]
DP = {"defense.dp_sgd.enabled": True, "defense.dp_sgd.noise_multiplier": 0.5}


@pytest.fixture
def run_folder(tmp_path) -> Path:
    folder = RunFolder(tmp_path / "run")
    folder.root.mkdir()
    folder.config.write_text(to_toml(ExperimentConfig()))
    for r in (0, 1, 2):
        folder.append(UtilityRow(round=r, test_accuracy=0.1 * r, test_loss=2.0 - r))
    for r, client, replay, defenses in ((1, 0, None, DP), (1, 1, None, DP), (2, 0, True, {})):
        folder.append(LabelRow(round=r, client=client, method="ilrg", ok=True, defenses=defenses, replay=replay,
                               label_lnacc=0.5, restored_counts=[1, 2]))
    folder.append(InversionRow(round=1, client=0, method="ig", ok=True, defenses=DP, psnr=12.5))
    return folder.root


def test_public_surface_is_all_and_import_stays_light():
    assert {"run", "load_run", "attack", "sweep", "Run"} <= set(fedsim.__all__)
    assert all(getattr(fedsim, name) is not None for name in fedsim.__all__)
    with pytest.raises(AttributeError):
        fedsim.not_a_name  # noqa: B018
    code = "import sys, fedsim; fedsim.__all__; print('torch' in sys.modules, 'flwr' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_rows_are_typed_per_kind(run_folder):
    run = fedsim.load_run(run_folder)
    assert [type(r) for r in run.rows("label")] == [LabelRow] * 3
    assert run.rows(InversionRow)[0].psnr == 12.5 and len(run.rows()) == 7
    with pytest.raises(ConfigError, match=r"^kind: 'labels' is not one of utility, label"):
        run.rows("labels")


def test_frame_is_tidy_replay_boolean_defenses_flattened_once(run_folder):
    run = fedsim.load_run(run_folder)
    df = run.frame("label")
    assert len(df) == 3 and df["replay"].tolist() == [False, False, True] and df["replay"].dtype == bool
    assert "defenses" not in df.columns
    assert df["defense.dp_sgd.noise_multiplier"].tolist()[:2] == [0.5, 0.5]
    assert df["restored_counts"].tolist()[0] == [1, 2]
    table = run.frame("label", defenses="table")
    settings = run.defenses()
    assert table["defense_setting"].tolist() == [0, 0, 1] and len(settings) == 2
    assert settings.loc[0, "defense.dp_sgd.enabled"] == True  # noqa: E712  (numpy bool)
    assert fedsim.load_run(run_folder).frame("utility")["test_accuracy"].tolist() == [0.0, 0.1, 0.2]


def test_load_run_refuses_what_is_not_a_run_folder(tmp_path):
    with pytest.raises(RunFolderError, match="no such run folder"):
        fedsim.load_run(tmp_path / "missing")
    with pytest.raises(RunFolderError, match="not a run folder"):
        fedsim.load_run(tmp_path)


def test_resolve_config_from_path_mapping_and_object():
    cfg = fedsim.resolve_config(ROOT / "configs" / "smoke.toml", {"train.lr": 0.2})
    assert cfg.train.lr == 0.2 and cfg.run.name == "smoke"
    nested = fedsim.resolve_config({"train": {"lr": 0.3}, "model": {"options": {"width": 4}}})
    assert nested.train.lr == 0.3 and nested.model.options == '{"width": 4}'
    assert fedsim.resolve_config(nested, {"run.seed": 3}).run.seed == 3
    with pytest.raises(ConfigError, match=r"^train\.lrr: unknown key"):
        fedsim.resolve_config({"train": {"lrr": 1}})


def test_run_refuses_a_bad_config_before_flower(tmp_path):
    with pytest.raises(ConfigError, match=r"^model\.name: cannot import 'nosuchpkg.m'"):
        fedsim.run(ROOT / "configs" / "smoke.toml", out=tmp_path / "r", overrides={"model.name": "nosuchpkg.m:f"})
    assert not (tmp_path / "r").exists()


def test_attack_turns_methods_into_attack_overrides(run_folder, monkeypatch):
    seen = {}

    def fake_replay(run_dir, overrides, quiet=False, resume=False):
        seen.update(dir=Path(run_dir), **overrides)
        return 0

    monkeypatch.setattr("fedsim.lab.replay.replay_attacks", fake_replay)
    run = fedsim.attack(run_folder, methods={"labels": ["ilrg", "llg"], "inversion": "ig"},
                        overrides={"attack.inversion_steps": 5}, report=False)
    assert seen == {"dir": run_folder, "attack.label_methods": "ilrg,llg", "attack.inversion": "ig",
                    "attack.inversion_steps": 5}
    assert run.folder == run_folder
    with pytest.raises(ConfigError, match=r"^methods: 'invert' is not one of"):
        fedsim.attack(run_folder, methods={"invert": "ig"}, report=False)


def test_report_is_written_for_a_loaded_run(run_folder):
    run = fedsim.load_run(run_folder)
    assert run.write_report() == run.report_path and run.report_path.is_file()


def _readme_block(marker: str) -> str:
    text = (ROOT / "docs" / "extending.md").read_text()  # the README links the recipe there
    after = text[text.index(marker):]
    start = after.index("```python\n") + len("```python\n")
    return after[start:after.index("```", start)]


def test_readme_offline_recipe_runs_on_a_capture(tmp_path):
    """capture -> fake gradient -> restore_labels -> invert, as the README shows it (a FedSGD capture of 4
    MNIST images on an untrained FCN: iLRG restores the labels exactly)."""
    import torch

    from fedsim.attacks.gradients import batch_gradient
    from fedsim.core.captures import save_update
    from fedsim.core.experiment import dataset, make_model
    from fedsim.core.types import ClientUpdate

    cfg = fedsim.resolve_config({"model": {"name": "fcn3", "width": 64}, "train": {"algorithm": "fedsgd"}})
    folder = RunFolder(tmp_path / "smoke")
    folder.root.mkdir()
    folder.config.write_text(to_toml(cfg))
    ds, model = dataset(cfg), make_model(cfg)
    x, y = ds.normalize(ds.train_x[[0, 1, 600, 1200]]), ds.train_y[[0, 1, 600, 1200]]
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    after = {k: before[k] - 0.1 * g for k, g in zip(before, batch_gradient(model, x, y))}
    folder.capture(1, 0).parent.mkdir(parents=True)
    save_update(ClientUpdate("t", 1, 0, "fedsgd", before, after, lr=0.1, local_epochs=1, local_steps=1,
                             batch_size=4, num_examples=4), folder.capture(1, 0))
    scope: dict = {}
    exec(_readme_block("<!-- tests/test_api.py runs this block -->").replace("runs/smoke", str(folder.root)), scope)
    assert scope["labels"].labels.tolist() == sorted(y.tolist())
    assert tuple(scope["images"].shape) == (4, 1, 28, 28) and 0 <= float(scope["images"].min())
    assert torch.isfinite(scope["x_hat"]).all()


def test_sweep_preflights_every_setting_then_calls_the_sweep_runner(tmp_path, monkeypatch):
    calls = {}

    def fake_run_sweep(path, out, **kwargs):
        calls.update(path=Path(path), out=Path(out), **kwargs)
        return [{"label": "a", "test_accuracy": 0.5}, {"label": "b", "test_accuracy": 0.7}]

    monkeypatch.setattr("fedsim.lab.sweep.run_sweep", fake_run_sweep)
    spec = ROOT / "configs" / "sweep_dp.toml"
    result = fedsim.sweep(spec, out=tmp_path / "sw", overrides={"run.num_rounds": 1})
    assert calls["path"] == spec and calls["overrides"] == {"run.num_rounds": 1}
    assert result.frame()["test_accuracy"].tolist() == [0.5, 0.7] and result.report_path.name == "sweep.html"
    with pytest.raises(ConfigError, match=r"^model\.name: cannot import 'nosuch.m'"):
        fedsim.sweep(spec, out=tmp_path / "sw", overrides={"model.name": "nosuch.m:f"})
