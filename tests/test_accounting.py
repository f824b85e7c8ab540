"""fedsim.core.accounting: known answers of the Gaussian mechanism and Opacus' accountant."""

import math

import pytest

from fedsim.core.accounting import (central_dp_epsilon, dp_sgd_epsilon, gaussian_epsilon, local_dp_basic,
                               local_dp_epsilon, local_dp_noise_multiplier)
from fedsim.core.defense_registry import spent_for_config


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
def test_central_dp_is_the_composed_gaussian_mechanism(z, rounds):
    assert central_dp_epsilon(z, rounds, 1e-5) == pytest.approx(_gaussian_rdp_epsilon(z, rounds, 1e-5), rel=1e-6)


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


def test_local_dp_noise_is_flowers_and_one_release_is_no_worse_than_claimed():
    assert local_dp_noise_multiplier(1.0, 1e-5) == pytest.approx(math.sqrt(2 * math.log(1.25e5)))
    # one release: the RDP bound of the calibrated Gaussian is at most the (eps, delta) the mod claims
    assert local_dp_epsilon(1.0, 1e-5, 1) <= 1.0 + 1e-9
    eps_rdp = local_dp_epsilon(10.0, 1e-5, 150)
    eps_basic, delta_basic = local_dp_basic(10.0, 1e-5, 150)
    assert eps_basic == 1500.0 and delta_basic == pytest.approx(1.5e-3)
    assert eps_rdp < eps_basic  # RDP composition is tighter than basic composition


def test_spent_for_config_names_every_dp_mechanism():
    from fedsim.core.config import ExperimentConfig

    cfg = ExperimentConfig().replace(**{"defense.central_dp.clipping": "server",
                                        "defense.central_dp.noise_multiplier": 1.0,
                                        "defense.local_dp.enabled": True, "defense.local_dp.epsilon": 10.0,
                                        "defense.dp_sgd.enabled": True, "defense.dp_sgd.noise_multiplier": 1.0,
                                        "train.algorithm": "fedsgd", "train.batch_size": 8})
    spent = {s.mechanism: s for s in spent_for_config(cfg, 15, client_examples=1333)}
    assert set(spent) == {"dp_sgd", "central_dp", "local_dp"}
    assert spent["central_dp"].epsilon == pytest.approx(central_dp_epsilon(1.0, 15, 1e-5))
    assert spent["dp_sgd"].epsilon == pytest.approx(dp_sgd_epsilon(1.0, 8 / 1333, 15, 1e-5))
    assert spent["local_dp"].releases == 15 and "basic composition: eps 150" in spent["local_dp"].note
    assert spent_for_config(ExperimentConfig(), 15) == []
