import tomllib
from pathlib import Path

import pytest

from fedsim.core.config import ConfigError, ExperimentConfig, flatten, from_flat, load_config, parse_overrides

ROOT = Path(__file__).resolve().parents[1]


def test_pyproject_defaults_match_schema():
    app = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]
    assert flatten(app) == ExperimentConfig().to_flat()


PRESETS = sorted(p for p in (ROOT / "configs").glob("*.toml") if not p.name.startswith("sweep_"))
SWEEPS = sorted((ROOT / "configs").glob("sweep_*.toml"))


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.name)
def test_presets_are_valid_and_use_only_known_keys(preset):
    load_config(preset)


@pytest.mark.parametrize("sweep", SWEEPS, ids=lambda p: p.name)
def test_sweep_files_load_and_every_setting_is_valid(sweep):
    """Sweep files have their own [sweep] schema; load_sweep validates the base and every setting."""
    from fedsim.lab.sweep import load_sweep

    s = load_sweep(sweep)  # raises ConfigError on a bad base or setting
    assert len(s.settings) >= 2


@pytest.mark.parametrize("flat, fragment", [
    ({"train.lrr": 0.1}, "valid keys in [train]: algorithm, lr"),
    ({"trian.lr": 0.1}, "unknown section 'trian'"),
    ({"train.algorithm": "fedprox"}, "train.algorithm: 'fedprox' is not one of fedsgd, fedavg"),
    ({"train.lr": "fast"}, "train.lr: expected a number"),
    ({"run.num_rounds": 0}, "run.num_rounds: 0 is below the minimum 1"),
    ({"run.num_rounds": 1.5}, "run.num_rounds: expected an integer"),
    ({"data.dataset": "imagenet21k"}, "data.dataset: 'imagenet21k' is not one of"),
    ({"capture.rounds": "1,x"}, "capture.rounds: expected 'all' or comma-separated integers"),
    ({"capture.enabled": "yes"}, "capture.enabled: expected true or false"),
])
def test_bad_values_name_the_key_and_choices(flat, fragment):
    with pytest.raises(ConfigError) as err:
        from_flat(flat)
    assert fragment in str(err.value)


def test_overrides_are_coerced():
    cfg = load_config(ROOT / "configs" / "smoke.toml", parse_overrides(["train.lr=0.2", "capture.enabled=false"]))
    assert cfg.train.lr == 0.2 and cfg.capture.enabled is False
    with pytest.raises(ConfigError):
        parse_overrides(["train.lr"])


def test_flat_roundtrip():
    cfg = ExperimentConfig().replace(**{"train.batch_size": 4})
    assert from_flat(cfg.to_flat()) == cfg
