"""Issue 21, "accepted at load, refused later" and "bad input that gets past the checks": each input below used
to pass loading and then fail (or do nothing) after Flower had started; now each is one ConfigError line naming
the key, before any Flower process, and the CLI exits 2 without creating the run folder."""

import subprocess
import sys
from pathlib import Path

import pytest
from flwr.app import Context, RecordDict

from fedsim.core.config import ConfigError, ExperimentConfig
from fedsim.lab.cli import main as cli_main
from fedsim.lab.preflight import preflight

ROOT = Path(__file__).resolve().parents[1]
SMOKE = str(ROOT / "configs" / "smoke.toml")


def _refused(key: str, **flat) -> str:
    """The one-line ConfigError of ``ExperimentConfig().replace(**flat)``, which must name ``key``."""
    with pytest.raises(ConfigError) as err:
        ExperimentConfig().replace(**flat)
    message = str(err.value)
    assert message.startswith(key + ":") and "\n" not in message, message
    return message


# ---- 1. DP-SGD on a model Opacus refuses --------------------------------------------------------------------
def test_dp_sgd_with_batchnorm_fails_at_load_with_the_groupnorm_hint():
    message = _refused("model.batchnorm", **{"defense.dp_sgd.enabled": True, "model.batchnorm": True})
    assert "BatchNorm layer(s) (features.1, features.5)" in message and "GroupNorm" in message
    assert "model.batchnorm = false" in message
    message = _refused("model.name", **{"defense.dp_sgd.enabled": True, "model.name": "resnet18"})
    assert "20 BatchNorm layer(s)" in message and "ModuleValidator" in message
    # the check is specific: the same models without DP-SGD, and DP-SGD without BatchNorm, load
    ExperimentConfig().replace(**{"model.batchnorm": True})
    ExperimentConfig().replace(**{"model.name": "resnet18"})
    ExperimentConfig().replace(**{"defense.dp_sgd.enabled": True, "model.name": "lenet5"})


def test_opacus_agrees_that_the_refused_model_cannot_be_made_private():
    """What the load check predicts is what Opacus does on the client: make_private refuses the BN ConvNet."""
    import torch
    from opacus import PrivacyEngine
    from torch.utils.data import DataLoader, TensorDataset

    from fedsim.core.models import build_model

    model = build_model("convnet", (1, 28, 28), 10, seed=0, width=4, batchnorm=True)
    loader = DataLoader(TensorDataset(torch.zeros(8, 1, 28, 28), torch.zeros(8, dtype=torch.long)), batch_size=4)
    with pytest.raises(Exception, match="BatchNorm"):
        PrivacyEngine().make_private(module=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                                     data_loader=loader, noise_multiplier=1.0, max_grad_norm=1.0)


# ---- 2. attack names when the ServerApp starts (bare `flwr run .`, no preflight) ------------------------------
@pytest.mark.parametrize("key, value", [("attack.inversion", "igg"), ("attack.label_methods", "ilrg,llgg")])
def test_serverapp_refuses_an_attack_typo_at_start_with_preflights_message(tmp_path, key, value):
    from fedsim.server.app import main as server_main

    out = tmp_path / "run"
    flat = {**ExperimentConfig().replace(**{"run.out_dir": str(out), "attack.enabled": True}).to_flat(), key: value}
    with pytest.raises(ConfigError) as at_start:
        server_main(None, Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config=flat))
    with pytest.raises(ConfigError) as at_preflight:
        from fedsim.core.config import from_flat

        preflight(from_flat(flat))
    assert str(at_start.value) == str(at_preflight.value)
    assert str(at_start.value).startswith(key + ":") and "\n" not in str(at_start.value)
    assert not out.exists()  # refused before the run folder (and any Flower round)


# ---- 3. bad input that got past the checks ------------------------------------------------------------------
@pytest.mark.parametrize("key, flat, fragment", [
    ("train.min_train_nodes", {"run.num_clients": 3, "train.min_train_nodes": 4}, "wait forever"),
    ("attack.clients", {"run.num_clients": 3, "attack.clients": "0,99"}, "client 99 does not exist"),
    ("attack.clients", {"run.num_clients": 3, "attack.clients": "3"}, "valid: 'all' or client ids in 0 .. 2"),
    ("capture.clients", {"run.num_clients": 3, "capture.clients": "-1"}, "client -1 does not exist"),
    ("attack.clients", {"attack.clients": ","}, "selects no client"),
    ("attack.rounds", {"run.num_rounds": 3, "attack.rounds": "999"}, "round 999 is outside 1 .. run.num_rounds = 3"),
    ("capture.rounds", {"run.num_rounds": 3, "capture.rounds": "0,1"}, "round 0 is outside"),
    ("attack.clients", {"run.num_clients": 4, "train.min_train_nodes": 4, "defense.secagg.enabled": True,
                        "attack.clients": "0,1"}, "only the aggregate, client 9999"),
])
def test_a_selection_of_nothing_or_a_federation_that_never_starts_fails_at_load(key, flat, fragment):
    assert fragment in _refused(key, **flat)


def test_what_the_selection_checks_let_through():
    """Known answers: ids 0..n-1 and rounds 1..R pass; under SecAgg+ the aggregate id passes; an attacked round
    outside capture.rounds passes (the scheduler captures every update it attacks: server/scheduler.py)."""
    from fedsim.core.defense.secagg import AGGREGATE_CLIENT

    ExperimentConfig().replace(**{"run.num_clients": 3, "run.num_rounds": 2, "train.min_train_nodes": 3,
                                  "attack.clients": "0,2", "attack.rounds": "2", "capture.rounds": "1"})
    ExperimentConfig().replace(**{"run.num_clients": 4, "train.min_train_nodes": 4, "defense.secagg.enabled": True,
                                  "attack.clients": str(AGGREGATE_CLIENT), "capture.clients": "all"})


def test_generative_prior_and_lpips_files_are_checked_before_the_run(tmp_path):
    from fedsim.core.config import from_flat

    base = {**ExperimentConfig().to_flat(), "attack.enabled": True, "attack.inversion": "ggl"}
    run = tmp_path / "run"
    with pytest.raises(ConfigError, match=r"^attack\.inversion: 'ggl' needs a trained generative prior"):
        preflight(from_flat(base), run)
    with pytest.raises(ConfigError, match=r"^attack\.prior_path: '/nope/p\.safetensors' is not a file"):
        preflight(from_flat({**base, "attack.prior_path": "/nope/p.safetensors"}), run)
    with pytest.raises(ConfigError, match=r"^attack\.lpips_weights: '/nope' is not a file"):
        preflight(from_flat({**base, "attack.inversion": "ig", "attack.lpips_weights": "/nope"}), run)
    preflight(from_flat({**base, "attack.prior_autotrain": True}), run)  # trained at run time: nothing to check
    prior = run / "priors" / "mnist_subset_vae.safetensors"  # the default path, once it exists, passes
    prior.parent.mkdir(parents=True)
    prior.write_bytes(b"x")
    preflight(from_flat(base), run)
    assert not (run / "metrics.jsonl").exists()


# ---- 4. the `run` command: a folder as config, a file as --out; every case above through the CLI -------------
@pytest.mark.parametrize("args, key", [
    (["--set", "train.min_train_nodes=5"], "train.min_train_nodes"),
    (["--set", "attack.clients=99"], "attack.clients"),
    (["--set", "attack.rounds=999"], "attack.rounds"),
    (["--set", "attack.inversion=ggl"], "attack.inversion"),
    (["--set", "attack.lpips_weights=/nope"], "attack.lpips_weights"),
    (["--set", "attack.inversion=igg"], "attack.inversion"),
    (["--set", "defense.dp_sgd.enabled=true", "--set", "model.batchnorm=true"], "model.batchnorm"),
    (["--set", "defense.secagg.enabled=true", "--set", "defense.secagg.quantization_range=2"],
     "defense.secagg.quantization_range"),
])
def test_fedsim_run_refuses_in_one_line_exit_2_and_creates_nothing(tmp_path, capsys, args, key):
    out = tmp_path / "run"
    assert cli_main(["run", SMOKE, "--out", str(out), "--quiet", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"fedsim: config error: {key}:") and "\n" not in err, err
    assert not out.exists()


def test_fedsim_run_on_a_folder_or_into_a_file_is_one_line_not_a_traceback(tmp_path):
    user_file = tmp_path / "notes.txt"
    user_file.write_text("mine\n")
    cases = [([str(ROOT / "configs"), "--out", str(tmp_path / "run")], "is a folder, not a TOML file"),
             ([SMOKE, "--out", str(user_file)], "--out: "),
             ([SMOKE, "--out", str(user_file / "sub")], f"cannot be created: {user_file} is a file")]
    for args, fragment in cases:
        proc = subprocess.run([sys.executable, "-m", "fedsim.lab.cli", "run", *args, "--quiet"], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and fragment in lines[0], proc.stderr
        assert "Traceback" not in proc.stderr
    assert user_file.read_text() == "mine\n" and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


# ---- 5. SecAgg+ below a safe bound --------------------------------------------------------------------------
def _secagg(**extra):
    return {"run.num_clients": 6, "train.min_train_nodes": 6, "defense.secagg.enabled": True, **extra}


def test_secagg_threshold_must_exceed_half_the_shares():
    from fedsim.core.defense.secagg import safe_threshold, secagg_plan

    message = _refused("defense.secagg.reconstruction_threshold", **_secagg(**{
        "defense.secagg.reconstruction_threshold": 2}))
    assert "at most half of the 6 shares" in message and "valid: 4 .. 5" in message
    _refused("defense.secagg.reconstruction_threshold", **_secagg(**{"defense.secagg.reconstruction_threshold": 3}))
    assert secagg_plan(ExperimentConfig().replace(**_secagg())).threshold == 4  # 0 = the safe minimum
    assert secagg_plan(ExperimentConfig().replace(**_secagg(**{
        "defense.secagg.reconstruction_threshold": 5}))).threshold == 5
    assert [safe_threshold(n) for n in (3, 4, 5, 6, 7)] == [2, 3, 3, 4, 4]
    # any two sets of safe_threshold(n) neighbours out of n overlap (no two disjoint quorums)
    assert all(2 * safe_threshold(n) > n for n in range(3, 200))


def test_secagg_quantization_below_16_bits_is_refused():
    message = _refused("defense.secagg.quantization_range", **_secagg(**{"defense.secagg.quantization_range": 2}))
    assert "below the minimum 65536" in message and "= 8," in message  # one level = 2 * 8 / 2
    ExperimentConfig().replace(**_secagg(**{"defense.secagg.quantization_range": 2**16}))
    ExperimentConfig().replace(**{"defense.secagg.quantization_range": 2})  # SecAgg+ off: not used, not refused
