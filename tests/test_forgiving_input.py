"""Forgiving input (issue 34): a TOML array wherever a comma list is accepted (both valid, one config), "did you
mean" for a method, a key, a section, a subcommand, a path and a preset, and the hint for ``--set "a=1 b=2"``.
Each test asserts the exact suggestion. Fast: no federation, no torch model is trained."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedsim.core.config import ConfigError, ExperimentConfig, from_flat, load_config, parse_overrides
from fedsim.core.lists import comma_list

ROOT = Path(__file__).resolve().parents[1]


# ---- TOML arrays and comma-separated strings --------------------------------------------------------------
@pytest.mark.parametrize("key, array, text", [
    ("attack.label_methods", ["ilrg", "gi"], "ilrg,gi"),
    ("attack.rounds", [1, 3], "1,3"),
    ("attack.clients", [0, 2], "0,2"),
    ("capture.rounds", [2], "2"),
    ("capture.clients", ["all"], "all"),
    ("attack.prior_archs", ["conv", "mlp"], "conv,mlp"),
    ("attack.plugins", [], ""),
    ("faults.dropout", ["1:2", "3"], "1:2,3"),
    ("faults.corrupt", ["0:nan:1"], "0:nan:1"),
    ("defense.custom.mods", [], ""),
])
def test_array_and_string_give_the_same_config(key, array, text):
    """The array is stored as the comma-separated string: the same config, and a value Flower's run config
    carries (``flatten_dict`` refuses lists)."""
    from flwr.common.config import flatten_dict

    cfg = from_flat({key: array})
    assert cfg == from_flat({key: text})
    flat = flatten_dict(cfg.to_nested())  # what fedsim submits to flwr run (config.toml) must be a run config
    assert flat[key] == text


def test_toml_array_in_a_file_and_in_set(tmp_path):
    """``label_methods = ["ilrg", "gi"]`` in a preset (refused with "expected a string" before) and
    ``--set 'attack.label_methods=["ilrg","gi"]'`` give the config of ``"ilrg,gi"``; the readers get the tuple."""
    from fedsim.evaluation.attacking import label_method_names

    smoke = (ROOT / "configs" / "smoke.toml").read_text()
    as_array = tmp_path / "array.toml"
    as_array.write_text(smoke + '\n[faults]\ndropout = ["1:2", "3"]\n')
    as_text = tmp_path / "text.toml"
    as_text.write_text(smoke + '\n[faults]\ndropout = "1:2,3"\n')
    arrays = {"attack.label_methods": ["ilrg", "gi"]}
    cfg = load_config(as_array, arrays)
    assert cfg == load_config(as_text, {"attack.label_methods": "ilrg,gi"})
    assert cfg == load_config(as_text, parse_overrides(['attack.label_methods=["ilrg","gi"]']))
    assert cfg == load_config(as_text, parse_overrides(["attack.label_methods=[ilrg, gi]"]))
    assert cfg == load_config(as_text, parse_overrides(["attack.label_methods=ilrg,gi"]))
    assert label_method_names(cfg) == ("ilrg", "gi")
    assert comma_list(" ilrg, gi ,") == comma_list(["ilrg", "gi"]) == ("ilrg", "gi")


def test_a_list_key_refuses_what_is_no_list():
    with pytest.raises(ConfigError, match=r"^attack\.label_methods: expected a list of names or integers .*got 1\.5"):
        from_flat({"attack.label_methods": ["ilrg", 1.5]})


# ---- did you mean ------------------------------------------------------------------------------------------
def _error(flat) -> str:
    with pytest.raises(ConfigError) as err:
        from_flat(flat)
    assert "\n" not in str(err.value)
    return str(err.value)


def test_method_typo_suggests_the_method():
    from fedsim.evaluation.attacking import plan_from_config

    with pytest.raises(ConfigError) as err:
        plan_from_config(ExperimentConfig().replace(**{"attack.inversion": "igshadow"}))
    message = str(err.value)
    assert message.startswith("attack.inversion: 'igshadow' is not one of none, ")  # the choices still listed
    assert message.endswith("; did you mean 'ig-shadow'?")
    with pytest.raises(ConfigError) as err:
        plan_from_config(ExperimentConfig().replace(**{"attack.label_methods": ["ilrg", "ilgr"]}))
    assert str(err.value).startswith("attack.label_methods: 'ilgr' is not one of ")
    assert str(err.value).endswith("; did you mean 'ilrg' or 'idlg'?")  # both as close: each named, best first


@pytest.mark.parametrize("flat, suggestion", [
    ({"model.name": "convnett"}, "'convnet'"),                  # a model (a choice key)
    ({"data.partition": "dirichelt"}, "'dirichlet'"),           # a partitioner
    ({"data.dataset": "mnist_subst"}, "'mnist_subset'"),        # a dataset (the registry)
    ({"run.seeed": 1}, "'run.seed'"),                           # a key
    ({"trian.lr": 0.1}, "'train.lr'"),                          # a section
    ({"defense.dpsgd.enabled": True}, "'defense.dp_sgd.enabled'"),  # a defense table
])
def test_typo_suggests_the_close_name(flat, suggestion):
    message = _error(flat)
    assert message.startswith(f"{next(iter(flat))}: ")  # names the key
    assert message.endswith(f"; did you mean {suggestion}?"), message


def test_subcommand_typo(capsys):
    from fedsim.lab.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["chek", "smoke"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert exit_.value.code == 2
    assert "invalid choice: 'chek'" in err and err.endswith("; did you mean 'check'?"), err


def test_missing_path_and_preset_suggest_close_names(tmp_path, monkeypatch, capsys):
    from fedsim.core.config import read_toml
    from fedsim.lab.cli import main
    from fedsim.lab.presets import resolve

    monkeypatch.chdir(ROOT)
    assert main(["check", "configs/smok.toml"]) == 2
    assert capsys.readouterr().err.strip().endswith("; did you mean 'configs/smoke.toml'?")
    with pytest.raises(ConfigError) as err:
        resolve("smok")  # a preset's name
    assert str(err.value).endswith("; did you mean 'smoke'?")
    (tmp_path / "mine.toml").write_text("")
    with pytest.raises(ConfigError) as err:
        read_toml(tmp_path / "mien.toml")
    assert str(err.value).endswith(f"; did you mean '{tmp_path / 'mine.toml'}'?")


# ---- --set "a=1 b=2" --------------------------------------------------------------------------------------
def test_set_with_several_pairs_in_one_value_says_pass_several_flags():
    with pytest.raises(ConfigError) as err:
        parse_overrides(["train.lr=0.1 run.num_rounds=2"])
    assert str(err.value) == ("--set 'train.lr=0.1 run.num_rounds=2': one key=value per --set; pass several: "
                              "--set train.lr=0.1 --set run.num_rounds=2")
    assert parse_overrides(["data.data_dir=/data/my images"]) == {"data.data_dir": "/data/my images"}


def test_set_pairs_left_without_their_flag(capsys):
    """``--set train.lr=0.1 run.num_rounds=2`` unquoted: argparse's "unrecognized arguments" names the flag."""
    from fedsim.lab.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["check", "smoke", "--set", "train.lr=0.1", "run.num_rounds=2"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert exit_.value.code == 2
    assert err.endswith("unrecognized arguments: run.num_rounds=2; one key=value per --set: --set run.num_rounds=2")
