"""fedsim.core.accounting: known answers of the Gaussian mechanism and Opacus' accountant."""

import math

import pytest

from fedsim.core.accounting import (central_dp_epsilon, dp_sgd_epsilon, gaussian_epsilon, local_dp_basic,
                               local_dp_epsilon, local_dp_noise_multiplier)
from fedsim.core.defense.registry import spent_for_config


def _gaussian_rdp_epsilon(z: float, releases: int, delta: float) -> float:
    """Independent computation: RDP of the Gaussian mechanism is alpha / (2 z^2) per release; Opacus converts
    with eps = rdp - (log(delta) + log(alpha)) / (alpha - 1) + log((alpha - 1) / alpha) (Balle et al. 2020)."""
    best = math.inf
    for alpha in [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)):
        rdp = releases * alpha / (2 * z * z)
        eps = rdp - (math.log(delta) + math.log(alpha)) / (alpha - 1) + math.log((alpha - 1) / alpha)
        best = min(best, eps)
    return best


@pytest.mark.parametrize("z,rounds", [(1.0, 1), (1.0, 15), (0.5, 150), (4.0, 150)])
def test_central_dp_is_the_composed_gaussian_mechanism_at_half_the_multiplier(z, rounds):
    """Every client every round (no amplification): noise z C / m on sensitivity 2 C / m (replace-one)."""
    assert central_dp_epsilon(z, rounds, 1e-5) == pytest.approx(_gaussian_rdp_epsilon(z / 2, rounds, 1e-5), rel=1e-6)


def test_central_dp_at_z1_over_100_rounds_is_295_not_96():
    """Issue 35's figure: accounted at 2 C / n instead of C / n, z = 1 over 100 rounds is epsilon 295, not 96."""
    assert central_dp_epsilon(1.0, 100, 1e-5) == pytest.approx(294.86, abs=0.01)
    assert _gaussian_rdp_epsilon(1.0, 100, 1e-5) == pytest.approx(96.1, abs=0.1)


def test_more_rounds_and_less_noise_cost_more():
    assert central_dp_epsilon(1.0, 150, 1e-5) > central_dp_epsilon(1.0, 15, 1e-5) > central_dp_epsilon(2.0, 15, 1e-5)
    assert central_dp_epsilon(0.0, 3, 1e-5) == math.inf and central_dp_epsilon(1.0, 0, 1e-5) == 0.0


def test_dp_sgd_matches_opacus_directly_and_subsampling_amplifies():
    from opacus.accountants import RDPAccountant

    acc = RDPAccountant()
    for _ in range(150):
        acc.step(noise_multiplier=1.0, sample_rate=8 / 1333)
    assert dp_sgd_epsilon(1.0, 8 / 1333, 150, 1e-5) == pytest.approx(acc.get_epsilon(1e-5), rel=1e-9)
    assert dp_sgd_epsilon(1.0, 8 / 1333, 150, 1e-5) < gaussian_epsilon(1.0, 150, 1e-5)


def test_local_dp_noise_is_flowers_and_its_claim_does_not_hold_under_replace_one():
    assert local_dp_noise_multiplier(1.0, 1e-5) == pytest.approx(math.sqrt(2 * math.log(1.25e5)))
    # one release under replace-one (sensitivity 2 C): the mod's claim (calibrated at C) does not hold; the row
    # accounts the Gaussian at half of Flower's multiplier
    assert local_dp_epsilon(1.0, 1e-5, 1) > 1.0
    assert local_dp_epsilon(1.0, 1e-5, 1) == pytest.approx(gaussian_epsilon(local_dp_noise_multiplier(1.0, 1e-5) / 2,
                                                                            1, 1e-5))
    eps_basic, delta_basic = local_dp_basic(10.0, 1e-5, 150)
    assert eps_basic == 1500.0 and delta_basic == pytest.approx(1.5e-3)
    # issue 35's frontier figure: eps 3.5e4 accounted at C is about 1.4e5 at 2 C (one release: ~ 1 / z^2)
    assert local_dp_epsilon(1.0, 1e-5, 1) / gaussian_epsilon(local_dp_noise_multiplier(1.0, 1e-5), 1, 1e-5) > 2


def test_spent_for_config_names_every_dp_mechanism():
    from fedsim.core.config import ExperimentConfig

    cfg = ExperimentConfig().replace(**{"defense.central_dp.clipping": "server",
                                        "defense.central_dp.noise_multiplier": 1.0,
                                        "defense.local_dp.enabled": True, "defense.local_dp.epsilon": 10.0,
                                        "defense.dp_sgd.enabled": True, "defense.dp_sgd.noise_multiplier": 1.0,
                                        "train.algorithm": "fedsgd", "train.batch_size": 8})
    spent = {s.mechanism: s for s in spent_for_config(cfg, 15, client_examples=1333)}
    assert set(spent) == {"dp_sgd", "central_dp", "local_dp"}
    from fedsim.core.defense.base import sampled_clients

    m, n = sampled_clients(cfg), cfg.run.num_clients
    assert spent["central_dp"].epsilon == pytest.approx(central_dp_epsilon(1.0, 15, 1e-5, m, n))
    assert spent["central_dp"].relation.sensitivity == pytest.approx(2 * cfg.defense.central_dp.clip_norm / m)
    assert spent["dp_sgd"].epsilon == pytest.approx(dp_sgd_epsilon(1.0, 8 / 1333, 15, 1e-5))
    assert spent["local_dp"].releases == 15 and "2 C (replace-one)" in spent["local_dp"].note
    assert [(s.relation.unit, s.relation.relation) for s in (spent["dp_sgd"], spent["local_dp"])] == [
        ("example", "add-remove"), ("client", "replace-one")]
    assert spent_for_config(ExperimentConfig(), 15) == []
