"""Your own model and data (issue 22): ``model.name`` / ``data.dataset`` as ``package.module:attr`` from a
package outside the project, ``[model.options]``, ``data.dataset = "folder"``; one real federation."""

from __future__ import annotations

import json
import os
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from fedsim.core.config import ConfigError, flatten, from_flat, load_config, parse_overrides
from tests.byo_package import PACKAGE, write_package

ROOT = Path(__file__).resolve().parents[1]
BASE = {"data.dataset": f"{PACKAGE}.data:blobs", "model.name": f"{PACKAGE}.models:tiny", "run.num_clients": 2,
        "train.min_train_nodes": 2}


def importable_everywhere(root, monkeypatch):
    """Make the user's package at ``root`` importable here and (PYTHONPATH) in every child process; a generator
    for fixtures: after its yield the package's modules are forgotten."""
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv("PYTHONPATH", str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    yield root
    for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
        del sys.modules[name]


@pytest.fixture
def user_pkg(tmp_path, monkeypatch):
    """The user's package under tmp_path, importable here and (PYTHONPATH) in every child process."""
    yield from importable_everywhere(write_package(tmp_path / "userlib"), monkeypatch)


def _config_error(flat: dict) -> str:
    with pytest.raises(ConfigError) as err:
        from_flat(flat)
    return str(err.value)


@pytest.mark.parametrize("key, spec, fragment", [
    ("model.name", f"{PACKAGE}.modles:tiny", f"cannot import '{PACKAGE}.modles'"),
    ("model.name", f"{PACKAGE}.models:tiyn", f"module '{PACKAGE}.models' has no attribute 'tiyn'"),
    ("model.name", "convnett", "is not one of fcn3, lenet5, convnet, resnet18, vgg16 or a 'package.module:attr'"),
    ("model.name", f"{PACKAGE}.models:", "is not of the form 'package.module:attr'"),
    ("data.dataset", f"{PACKAGE}.dta:blobs", f"cannot import '{PACKAGE}.dta'"),
    ("data.dataset", f"{PACKAGE}.data:blob", f"module '{PACKAGE}.data' has no attribute 'blob'"),
    ("data.dataset", "foldr", "is not one of cifar10"),
])
def test_a_typo_in_a_reference_fails_at_load_in_one_line_naming_the_key(user_pkg, key, spec, fragment):
    message = _config_error({**BASE, key: spec})
    assert message.startswith(f"{key}: ") and fragment in message and "\n" not in message


def test_model_options_table_override_and_flower_carriage(user_pkg, tmp_path):
    preset = tmp_path / "byo.toml"
    preset.write_text(f'[model]\nname = "{PACKAGE}.models:tiny"\n[model.options]\nhidden = 7\n'
                      f'[data]\ndataset = "{PACKAGE}.data:blobs"\n[data.options]\nper_class = 12\n')
    cfg = load_config(preset)
    assert json.loads(cfg.model.options) == {"hidden": 7} and json.loads(cfg.data.options) == {"per_class": 12}
    cfg = load_config(preset, parse_overrides(["model.options.hidden=9", "model.options.note=wide"]))
    assert json.loads(cfg.model.options) == {"hidden": 9, "note": "wide"}  # --set values read as TOML
    # Flower refuses undeclared run-config keys: the tables travel as the one declared key model.options
    declared = flatten(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"])
    assert set(cfg.to_flat()) == set(declared) and from_flat(cfg.to_flat()) == cfg
    assert "model.options.x: expected a bool, int, float or string" in _config_error({"model.options.x": [1]})
    assert "must be a Python identifier" in _config_error({"model.options": '{"not-a-name": 1}'})


def test_factory_gets_shape_classes_and_options_and_is_built_once_checked(user_pkg):
    from fedsim.core.experiment import check_model, make_model

    cfg = from_flat({**BASE, "model.options.hidden": 5})
    model = check_model(cfg)
    first = model[1]
    assert (first.in_features, first.out_features, model[3].out_features) == (64, 5, 4)  # 1x8x8, hidden, 4 classes
    again = make_model(cfg)  # seeded: server, clients and replay build the same weights
    assert all(np.array_equal(a.detach().numpy(), b.detach().numpy())
               for a, b in zip(model.state_dict().values(), again.state_dict().values()))


@pytest.mark.parametrize("factory, fragment", [
    ("wrong_outputs", "to (2, 5); the data (byo_user_pkg.data:blobs) has 4 classes: expected logits (2, 4)"),
    ("raises", "raised RuntimeError: my factory is broken"),
    ("tiny", "raised TypeError"),  # an option the factory does not take
])
def test_preflight_refuses_a_model_that_does_not_fit_the_data(user_pkg, factory, fragment):
    from fedsim.lab.preflight import preflight

    flat = {**BASE, "model.name": f"{PACKAGE}.models:{factory}"}
    if factory == "tiny":
        flat["model.options.depth"] = 3
    cfg = from_flat(flat)
    with pytest.raises(ConfigError) as err:
        preflight(cfg, user_pkg / "run")
    assert str(err.value).startswith("model.name: ") and fragment in str(err.value) and "\n" not in str(err.value)


def test_user_loader_and_its_checks(user_pkg):
    from fedsim.core.experiment import client_data, dataset
    from fedsim.lab.preflight import preflight

    cfg = from_flat({**BASE, "data.options.per_class": 20, "data.image_size": 16})
    ds = dataset(cfg)
    assert ds.input_shape == (1, 16, 16) and len(ds.train_y) == 60 and ds.num_classes == 4
    x, y = client_data(cfg, 0, 2)
    assert x.shape[1:] == (1, 16, 16) and 0 < len(y) < 60
    bad = from_flat({**BASE, "data.dataset": f"{PACKAGE}.data:not_a_dataset"})
    with pytest.raises(ConfigError, match=r"^data\.dataset: .* returned a dict, not a fedsim\.core\.data\.ImageDataset$"):
        preflight(bad, user_pkg / "run")


def _png_tree(root: Path, sizes: dict[str, tuple[int, int]], per_class: int = 5) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls, (w, h) in sizes.items():
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / cls / f"{i}.png")
    return root


def test_folder_dataset_resizes_splits_per_class_and_is_deterministic(tmp_path):
    from fedsim.core.data import load_dataset

    tree = _png_tree(tmp_path / "imgs", {"cat": (12, 10), "dog": (9, 9), "emu": (12, 10)})
    with pytest.raises(ConfigError, match=r"^data\.image_size: the images under .* differ in size"):
        load_dataset("folder", tree)
    ds = load_dataset("folder", tree, image_size=8)
    assert ds.input_shape == (3, 8, 8) and ds.num_classes == 3
    assert np.bincount(ds.test_y.numpy()).tolist() == [1, 1, 1]  # round(0.2 * 5) per class
    assert np.bincount(ds.train_y.numpy()).tolist() == [4, 4, 4]
    again = load_dataset("folder", tree, image_size=8)
    assert bool((again.train_x == ds.train_x).all()) and len(ds.mean) == 3
    assert "data.data_dir: data.dataset = 'folder' needs" in _config_error({"data.dataset": "folder"})


def test_folder_with_train_and_test_subtrees(tmp_path):
    from fedsim.core.data import load_dataset

    _png_tree(tmp_path / "split" / "train", {"a": (6, 6), "b": (6, 6)}, per_class=3)
    _png_tree(tmp_path / "split" / "test", {"a": (6, 6), "b": (6, 6)}, per_class=2)
    ds = load_dataset("folder", tmp_path / "split")
    assert (len(ds.train_y), len(ds.test_y), ds.input_shape) == (6, 4, (3, 6, 6))


# ---- partitions: ours vs flwr-datasets (fedsim/core/partitions.py says why ours stays) -------------------------------

@pytest.fixture(scope="module")
def flower_parts():
    from datasets import Dataset  # flwr-datasets (and datasets) are dev dependencies

    labels = np.repeat(np.arange(10), 300)  # label-sorted, like our pools

    def run(partitioner, shuffle_seed: int | None = None) -> list[np.ndarray]:
        ds = Dataset.from_dict({"label": labels, "idx": np.arange(len(labels))})
        partitioner.dataset = ds.shuffle(seed=shuffle_seed) if shuffle_seed is not None else ds
        return [np.sort(np.asarray(partitioner.load_partition(i)["idx"])) for i in range(partitioner.num_partitions)]

    return labels, run


def test_iid_is_identical_to_flwr_datasets_on_a_seeded_shuffle(flower_parts):
    from flwr_datasets.partitioner import IidPartitioner

    from fedsim.core.partitions import partition

    labels, run = flower_parts
    for seed in range(3):
        ours = partition("iid", labels, 7, seed)
        assert all(np.array_equal(a, b) for a, b in zip(ours, run(IidPartitioner(7), shuffle_seed=seed)))
    unshuffled = run(IidPartitioner(7))  # Flower's IID as given: contiguous shards of a label-sorted pool
    assert max(len(np.unique(labels[p])) for p in unshuffled) <= 3


def test_dirichlet_and_shards_match_flwr_datasets_statistically(flower_parts):
    from flwr_datasets.partitioner import DirichletPartitioner, ShardPartitioner

    from fedsim.core.partitions import label_skew, partition

    labels, run = flower_parts
    seeds = range(8)
    ours = [label_skew(partition("dirichlet", labels, 10, s, alpha=0.5), labels, 10) for s in seeds]
    theirs = [label_skew(run(DirichletPartitioner(10, "label", 0.5, min_partition_size=1, seed=s)), labels, 10)
              for s in seeds]
    assert abs(np.mean(ours) - np.mean(theirs)) < 0.04 and 0.3 < np.mean(ours) < 0.6
    assert partition("dirichlet", labels, 10, 0, alpha=0.5)[0].tolist() != run(
        DirichletPartitioner(10, "label", 0.5, min_partition_size=1, seed=0))[0].tolist()  # other draws
    for s in range(3):
        a = partition("shards", labels, 10, s, shards_per_client=2)
        b = run(ShardPartitioner(10, "label", num_shards_per_partition=2, seed=s))
        assert [len(p) for p in a] == [len(p) for p in b] == [300] * 10
        assert max(len(np.unique(labels[p])) for p in a + b) <= 2


# ---- one real federation with the user's model and loader (Flower processes import the package) -------------

@pytest.mark.slow
def test_a_federation_with_the_users_model_and_loader_reaches_rows_and_report(user_pkg, tmp_path):
    import fedsim
    from fedsim.core.rows import LabelRow, UtilityRow

    config = {"run": {"name": "byo", "num_rounds": 1, "num_clients": 2, "seed": 0},
              "data": {"dataset": f"{PACKAGE}.data:blobs", "partition": "iid", "options": {"per_class": 24}},
              "model": {"name": f"{PACKAGE}.models:tiny", "options": {"hidden": 16}},
              "train": {"algorithm": "fedsgd", "lr": 0.1, "batch_size": 8, "min_train_nodes": 2},
              "attack": {"enabled": True, "label_methods": "ilrg", "inversion": "none", "workers": 1}}  # a spawned worker
    run = fedsim.run(config, out=tmp_path / "run", overrides={"run.round_timeout": 120})
    assert [r.round for r in run.rows(UtilityRow)] == [0, 1]
    labels = run.rows(LabelRow)
    assert len(labels) == 2 and all(r.ok and r.method == "ilrg" for r in labels)  # 2 clients x 1 round
    scores = [(r.num_samples, sum(r.restored_counts), sum(r.true_counts), r.label_lnacc) for r in labels]
    assert all(n == restored == true == 8 and 0.0 <= acc <= 1.0 for n, restored, true, acc in scores), scores
    cfg = run.config
    assert cfg.model.name == f"{PACKAGE}.models:tiny" and json.loads(cfg.model.options) == {"hidden": 16}
    assert [(c.round, c.client) for c in run.captures()] == [(1, 0), (1, 1)]
    update = run.update(1, 0)
    assert update.weights_before["1.weight"].shape == (16, 64)  # the user's model, in the server's capture
    page = run.report_path.read_text()
    assert "ilrg" in page and f"{PACKAGE}.models:tiny" in page


@pytest.mark.parametrize("command", ["check", "run"])
def test_cli_refuses_a_typo_in_one_line_exit_2(user_pkg, tmp_path, capsys, command):
    from fedsim.lab.cli import main

    preset = tmp_path / "byo.toml"
    preset.write_text(f'[model]\nname = "{PACKAGE}.models:tiny"\n[data]\ndataset = "{PACKAGE}.data:blobs"\n')
    extra = ["--out", str(tmp_path / "out")] if command == "run" else []
    code = main([command, str(preset), "--set", f"model.name={PACKAGE}.models:tiyn", *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0
    assert err.startswith(f"fedsim: config error: model.name: module '{PACKAGE}.models' has no attribute 'tiyn'")
    assert not (tmp_path / "out").exists()


def _readme_blocks(marker: str) -> list[str]:
    """The marked blocks of docs/extending.md (the README's "your own model, data, defense, attack" page)."""
    text = (ROOT / "docs" / "extending.md").read_text()
    out, at = [], text.find(marker)
    while at >= 0:
        start = text.index("\n", text.index("```", at)) + 1
        out.append(text[start:text.index("```", start)])
        at = text.find(marker, start)
    return out


def test_readme_model_and_folder_snippets_run(tmp_path, monkeypatch):
    """The README's factory (as mylab/models.py), its [model] table and its [data] folder table, together."""
    from fedsim.core.experiment import check_model

    (factory,) = _readme_blocks("<!-- tests/test_byo.py runs this block as mylab/models.py -->")
    model_toml, data_toml = _readme_blocks("<!-- tests/test_byo.py loads this block -->")
    (tmp_path / "mylab").mkdir()
    (tmp_path / "mylab" / "__init__.py").write_text("")
    (tmp_path / "mylab" / "models.py").write_text(factory)
    monkeypatch.syspath_prepend(str(tmp_path))
    tree = _png_tree(tmp_path / "my_images", {"cat": (40, 30), "dog": (36, 36)})
    preset = tmp_path / "readme.toml"
    preset.write_text(model_toml + data_toml.replace("/data/my_images", str(tree)))
    try:
        cfg = load_config(preset)
        model = check_model(cfg)
        assert model[0].out_channels == 32 and model[-1].out_features == 2  # [model.options], 2 classes
        assert cfg.data.image_size == 32
    finally:
        for name in [m for m in sys.modules if m == "mylab" or m.startswith("mylab.")]:
            del sys.modules[name]
