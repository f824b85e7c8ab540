"""A corpus of broken configurations: each fails via the CLI with exit code 2 and ONE stderr line that names
the key and what is allowed, never a traceback. Plus: a planted pickle in a run folder never executes on
``fedsim attack`` or ``fedsim report``."""

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from fedsim.core.config import load_config, to_toml

ROOT = Path(__file__).resolve().parents[1]
# A fixed base (not a preset file, so that presets can change without breaking the corpus).
SMOKE = """
[run]
name = "corpus"
num_rounds = 2
num_clients = 3
seed = 0

[data]
dataset = "mnist_subset"
partition = "dirichlet"
alpha = 1.0

[model]
name = "convnet"
width = 8

[train]
algorithm = "fedavg"
lr = 0.05
batch_size = 32
min_train_nodes = 3
"""

# (name, TOML text or None for a missing file, extra CLI args, words the one error line must contain)
CORPUS = [
    ("bad_key", SMOKE.replace("seed = 0", "seeed = 0"), [], ["run.seeed", "unknown key", "num_rounds"]),
    ("bad_value_choice", SMOKE.replace('partition = "dirichlet"', 'partition = "random"'), [],
     ["data.partition", "iid, dirichlet, shards"]),
    ("bad_value_min", SMOKE.replace("num_rounds = 2", "num_rounds = 0"), [], ["run.num_rounds", "minimum 1"]),
    ("bad_value_max", SMOKE + "\n[defense.update]\ntopk_ratio = 2.0\n", [], ["defense.update.topk_ratio",
                                                                             "maximum 1"]),
    ("old_flat_defense_key", SMOKE + "\n[defense]\ndp_sgd_noise = 0.5\n", [],
     ["defense.dp_sgd_noise", "defense.dp_sgd.noise_multiplier"]),
    ("old_defense_switch", SMOKE, ["--set", "defense.secagg=true"], ["defense.secagg", "defense.secagg.enabled"]),
    ("secagg_with_central_dp", SMOKE + "\n[defense.secagg]\nenabled = true\n[defense.central_dp]\n"
     "clipping = \"server\"\n", [], ["defense.secagg.enabled", "central_dp"]),
    ("bad_type_int", SMOKE.replace("num_rounds = 2", 'num_rounds = "two"'), [], ["run.num_rounds", "integer"]),
    ("bad_type_float", SMOKE.replace("lr = 0.05", 'lr = "fast"'), [], ["train.lr", "number"]),
    ("bad_type_bool", SMOKE + "\n[capture]\nenabled = 3\n", [], ["capture.enabled", "true or false"]),
    ("bad_type_str", SMOKE.replace('name = "convnet"', "name = 5"), [], ["model.name", "string"]),
    ("bad_dataset", SMOKE.replace('dataset = "mnist_subset"', 'dataset = "imagenet9"'), [],
     ["data.dataset", "mnist_subset"]),
    ("bad_section", SMOKE + "\n[trian]\nlr = 0.1\n", [], ["trian.lr", "unknown section", "valid sections"]),
    ("bad_selection", SMOKE + "\n[attack]\nrounds = \"1,x\"\n", [], ["attack.rounds", "comma-separated"]),
    ("bad_fault_kind", SMOKE + "\n[faults]\ncorrupt = \"1:melt\"\n", [], ["faults.corrupt", "nan, inf"]),
    ("bad_fault_entry", SMOKE + "\n[faults]\ndropout = \"1:2:3\"\n", [], ["faults.dropout", "client[:round]"]),
    ("bad_toml_syntax", SMOKE.replace("[model]", "[model"), [], ["not valid TOML"]),
    ("missing_file", None, [], ["does not exist"]),
    ("bad_override_key", SMOKE, ["--set", "train.momentum=0.9"], ["train.momentum", "valid keys"]),
    ("bad_override_form", SMOKE, ["--set", "train.lr"], ["--set", "section.key=value"]),
    ("bad_override_value", SMOKE, ["--set", "model.activation=gelu"], ["model.activation", "relu"]),
]


@pytest.mark.parametrize("name, text, extra, words", CORPUS, ids=[c[0] for c in CORPUS])
def test_broken_config_gives_one_line(tmp_path, name, text, extra, words):
    path = tmp_path / f"{name}.toml"
    if text is not None:
        path.write_text(text)
    proc = subprocess.run([str(ROOT / ".venv" / "bin" / "fedsim"), "run", str(path), "--out", str(tmp_path / "out"),
                           "--quiet", *extra], capture_output=True, text=True, timeout=120, cwd=ROOT)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert not (tmp_path / "out" / "metrics.jsonl").exists()


class _Plant:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("command", ["attack", "report"])
def test_planted_pickle_never_executes(tmp_path, command):
    run = tmp_path / "run"
    marker = tmp_path / "PWNED"
    cfg = load_config(ROOT / "configs" / "smoke.toml", {"attack.enabled": True, "attack.workers": 0,
                                                         "run.out_dir": str(run)})
    run.mkdir()
    (run / "config.toml").write_text(to_toml(cfg))
    payload = pickle.dumps(_Plant(str(marker)))
    for rel in ("captures/round_0001/client_0000.safetensors", "captures/round_0001/client_0001.pt",
                "audit/round_0001/client_0000.safetensors", "captures/round_0001/client_0002.pkl"):
        (run / rel).parent.mkdir(parents=True, exist_ok=True)
        (run / rel).write_bytes(payload)
    (run / "metrics.jsonl").write_text('{"kind": "utility", "round": 0, "test_accuracy": 0.1, "test_loss": 2.3}\n')
    proc = subprocess.run([str(ROOT / ".venv" / "bin" / "fedsim"), command, str(run), *(
        ["--quiet"] if command == "attack" else [])], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert not marker.exists(), proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr or "pickle" not in proc.stderr.lower()
