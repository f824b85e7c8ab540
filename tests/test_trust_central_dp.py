"""Central DP reports the privacy of the noise really added (issue 21, defect 1; issue 35, defect 1).

The released aggregate is ``W + sum(clipped deltas) / m + N(0, (z C / m)^2)`` (Flower's fixed-clipping wrapper
for clipping and noise, fedsim's fixed denominator m: ``fedsim.server.central_dp``). These tests measure that
noise from what the server released (mocked stack) and from the captures of a real Flower simulation (unequal
Dirichlet partitions, partial sampling, a dropout), and check that equal weights are what was released, that
the privacy row names the multiplier ``z / 2`` (replace-one, sensitivity ``2 C / m``) and that the reported
epsilon is the epsilon of the measured noise (tests/test_dp_relations.py recomputes it with dp_accounting).
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from unittest.mock import Mock

import pytest
import torch
from flwr.serverapp.strategy import FedAvg

from fedsim.core.accounting import central_dp_epsilon, central_dp_releases_epsilon
from fedsim.core.config import ExperimentConfig
from fedsim.core.defense.base import sampled_clients
from fedsim.core.models import build_model
from fedsim.core.rows import PrivacyRow
from fedsim.core.runfolder import RunFolder
from fedsim.server.central_dp import CentralDpAccount
from fedsim.server.defense_wiring import weighting_key, wrap_strategy
from fedsim.server.strategy import CuriousStrategy
from fedsim.server.validation import ReplyGate, ReplyScreen, TrainSettings
from tests.test_faults import _error_reply, _honest, _reply
from tests.test_trust import _configure

ROOT = Path(__file__).resolve().parents[1]


def _flat(state: dict, names: list[str]) -> torch.Tensor:
    return torch.cat([torch.as_tensor(state[n]).double().flatten() for n in names])


def _gate(tmp_path, cfg: ExperimentConfig):
    model = build_model("convnet", (1, 28, 28), 10, seed=0, width=8)
    sent = {k: v.clone() for k, v in model.state_dict().items()}
    names = [n for n, _ in model.named_parameters()]
    folder = RunFolder(tmp_path)
    screen = ReplyScreen(names, TrainSettings("fedavg", 0.1, 1, 4, {}), "r", folder)
    captured: list = []
    inner = FedAvg(fraction_evaluate=0.0, weighted_by_key=weighting_key(cfg))
    inner.configure_train = Mock(return_value=[])
    curious = CuriousStrategy(inner, run_id="r", parameter_names=names, settings=screen.settings,
                              sinks=[captured.append], run_folder=folder, screen=screen)
    return ReplyGate(wrap_strategy(curious, cfg, folder), screen), sent, names, captured, folder


def _cfg(z: float, clip: float) -> ExperimentConfig:
    # 5 clients at fraction 0.7: FedAvg samples max(int(3.5), 2) = 3 (the old wiring calibrated for round(3.5) = 4)
    return ExperimentConfig().replace(**{"defense.central_dp.clipping": "server",
                                         "defense.central_dp.noise_multiplier": z, "defense.central_dp.clip_norm": clip,
                                         "run.num_clients": 5, "train.fraction_train": 0.7,
                                         "train.min_train_nodes": 2})

def _released_noise(gate, sent: dict, names: list[str], captured: list, m: int):
    """Two rounds through ``gate`` (round 1: 3 honest replies; round 2: 2 and a dropout); yields each release minus
    ``W + sum(clipped deltas) / m`` (the captured replies are the clipped ones): the noise the server added."""
    w0 = _flat(sent, names)
    for rnd, replies in ((1, [_reply(_honest(sent, s, scale=0.05), {"num-examples": 10 + 90 * s}, s)
                              for s in range(3)]),
                         (2, [_reply(_honest(sent, 10 + s, scale=0.05), {"num-examples": 10 + 90 * s}, s)
                              for s in range(2)] + [_error_reply(2)])):
        captured.clear()
        _configure(gate, sent, rnd)
        arrays, _ = gate.aggregate_train(rnd, replies)
        yield _flat(arrays.to_torch_state_dict(), names) - w0 - sum(
            _flat(u.weights_after, names) - w0 for u in captured) / m



def test_one_sampled_count_feeds_fedavg_the_wrapper_and_the_accountant(tmp_path):
    cfg = _cfg(0.5, 1.0)
    assert sampled_clients(cfg) == 3
    gate, *_ = _gate(tmp_path, cfg)
    release = gate.inner
    assert release.calibrated_for == 3 and release.inner.num_sampled_clients == 3
    assert release.inner.strategy.denominator == 3 and release.relation.sensitivity == pytest.approx(2 / 3)


def test_unequal_claims_are_averaged_with_equal_weights(tmp_path):
    """No noise: the release is exactly the unweighted mean of the clipped replies, whatever the claims."""
    gate, sent, names, captured, folder = _gate(tmp_path, _cfg(0.0, 1e6))
    _configure(gate, sent)
    claims = [10, 50, 2000]
    arrays, _ = gate.aggregate_train(1, [_reply(_honest(sent, s, scale=0.05 * (s + 1)), {"num-examples": n}, s)
                                         for s, n in enumerate(claims)])
    released = _flat(arrays.to_torch_state_dict(), names)
    replies = [_flat(u.weights_after, names) for u in captured]
    unweighted = torch.stack(replies).mean(0)
    weighted = sum(n * r for n, r in zip(claims, replies)) / sum(claims)
    assert torch.allclose(released, unweighted, atol=1e-6)
    assert (released - weighted).abs().max() > 1e-3  # FedAvg by claim would have given this instead
    [row] = folder.rows(PrivacyRow)
    assert row.epsilon == math.inf and row.clients == 3 and row.sampled == 3


def test_the_noise_measured_in_the_release_is_the_noise_the_row_accounts_for(tmp_path):
    """Round 1: 3 replies (the full sample), round 2: one dropout (2 of 3). The noise is measured as the release
    minus ``W + sum(clipped deltas) / m``; over the sensitivity ``2 C / m`` it is the row's multiplier ``z / 2``
    in both rounds (a dropout lowers the signal, not the noise)."""
    z, clip, m = 0.8, 0.5, 3
    gate, sent, names, captured, folder = _gate(tmp_path, _cfg(z, clip))
    measured = [float(noise.std()) / (2 * clip / m) for noise in _released_noise(gate, sent, names, captured, m)]
    rows = folder.rows(PrivacyRow)
    assert [(r.round, r.clients, r.sampled) for r in rows] == [(1, 3, 3), (2, 2, 3)]
    tol = 4 / math.sqrt(2 * 9098)  # relative sampling error of a std over 9098 coordinates, 4 sigma
    for row, z_measured in zip(rows, measured):
        assert row.noise_multiplier == pytest.approx(z / 2) == pytest.approx(z_measured, rel=tol)
    assert rows[1].epsilon == pytest.approx(central_dp_epsilon(z, 2, 1e-5, 3, 5))


def test_the_accountant_composes_releases_under_replace_one():
    account = CentralDpAccount(population=10, delta=1e-5)
    zs = [0.5, 0.5, 0.25, 0.5]  # each distinct (z, m, N) costs dp_accounting about a second
    for z in zs:
        eps = account.compose(z, 3)
    assert eps == pytest.approx(central_dp_releases_epsilon([(z, 3, 10) for z in zs], 1e-5))
    assert central_dp_epsilon(1.0, 5, 1e-5, 3, 10) == pytest.approx(
        central_dp_releases_epsilon([(0.5, 3, 10)] * 5, 1e-5))
    # sampling 3 of 10 without replacement amplifies; all 10 of 10 is the plain Gaussian at z / 2
    assert central_dp_epsilon(1.0, 5, 1e-5, 3, 10) < central_dp_epsilon(1.0, 5, 1e-5, 10, 10)
    assert account.compose(0.0, 3) == math.inf


@pytest.mark.slow
def test_a_real_federation_reports_at_least_the_epsilon_of_the_noise_in_its_captures(tmp_path):
    """5 clients on Dirichlet(0.3) partitions (unequal sizes), fraction 0.7 (3 sampled), client 1 drops out in
    round 2, server-side clipping at 0.2 with z = 0.3; the noise of each release is measured from the captures
    (the next round's global model minus the equal-weight mean of the clipped replies the server captured)."""
    from fedsim.core.captures import iter_captures, load_update

    out = tmp_path / "cdp"
    z, clip = 0.3, 0.2
    sets = {"run.name": "cdp", "run.num_clients": 5, "run.num_rounds": 3, "data.partition": "dirichlet",
            "data.alpha": 0.3, "data.max_examples_per_client": 96, "train.fraction_train": 0.7,
            "train.min_train_nodes": 2, "train.batch_size": 16, "train.max_local_steps": 2,
            "defense.central_dp.clipping": "server", "defense.central_dp.noise_multiplier": z,
            "defense.central_dp.clip_norm": clip, "attack.enabled": False, "faults.enabled": True,
            "capture.rounds": "all", "capture.clients": "all",  # every update of rounds 1-3 is read below
            "faults.dropout": "1:2"}
    args = [a for k, v in sets.items() for a in ("--set", f"{k}={str(v).lower() if isinstance(v, bool) else v}")]
    proc = subprocess.run([sys.executable, "-m", "fedsim.lab.cli", "run", str(ROOT / "configs" / "smoke.toml"),
                           "--out", str(out), "--quiet", *args], capture_output=True, text=True, timeout=540,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    updates = [load_update(p) for p in iter_captures(out)]
    names = updates[0].parameter_names
    rows = {r.round: r for r in RunFolder(out).rows(PrivacyRow) if r.mechanism == "central_dp"}
    measured, m = [], 3
    for rnd in (1, 2):
        mine = [u for u in updates if u.server_round == rnd]
        later = next(u for u in updates if u.server_round == rnd + 1)
        assert rows[rnd].clients == len(mine) and rows[rnd].sampled == m
        w0 = _flat(mine[0].weights_before, names)
        noise = _flat(later.weights_before, names) - w0 - sum(_flat(u.weights_after, names) - w0 for u in mine) / m
        measured.append(float(noise.std()) / (2 * clip / m))  # replace-one, fixed denominator m
    tol = 4 / math.sqrt(2 * len(noise))
    for rnd, z_measured in zip((1, 2), measured):
        assert rows[rnd].noise_multiplier == pytest.approx(z_measured, rel=tol)
    assert rows[2].epsilon == pytest.approx(central_dp_releases_epsilon([(zm, m, 5) for zm in measured], 1e-5),
                                            rel=0.05)


def test_the_report_names_a_weakened_release(tmp_path):
    """Dropped replies are no longer only in docs/reliability.md: the report states the effective multiplier."""
    from fedsim.lab.report import write_report

    folder = RunFolder(tmp_path)
    for rnd, n, z in ((1, 3, 0.3), (2, 2, 0.2)):
        folder.append(PrivacyRow(round=rnd, epsilon=10.0 * rnd, delta=1e-5, accountant="flwr-rdp",
                                 mechanism="central_dp", noise_multiplier=z, clients=n, sampled=3))
    page = write_report(tmp_path).read_text(encoding="utf-8")
    assert "effective noise multiplier fell to 0.2 (round 2, 2 of 3)" in page
    assert "z 0.3, 3 / 3" in page and "z 0.2, 2 / 3" in page
