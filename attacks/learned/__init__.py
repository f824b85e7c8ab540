"""Learned end-to-end gradient inversion (Wu et al., "Learning to Invert", 2022-style): see ``inverter.py``.

    from fedsim.attacks.learned import train_inverter, learned_invert
"""

from fedsim.attacks.learned.inverter import (LearnedInverter, gradient_features, learned_invert, per_sample_gradients,
                                      stale, train_inverter, weights_fingerprint)

__all__ = ["LearnedInverter", "gradient_features", "learned_invert", "per_sample_gradients", "stale",
           "train_inverter", "weights_fingerprint"]
