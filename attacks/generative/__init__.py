"""Generative image priors for gradient inversion (GGL / GIAS style), trained by the server on public data.

    from fedsim.attacks.generative import train_prior, aux_split
    prior = train_prior(dataset="mnist_subset", path="runs/x/priors/mnist_subset_vae.safetensors")
    x_hat = invert("ggl", model=m, gradients=g, labels=y, input_shape=(1, 28, 28), steps=300,
                   mean=mean, std=std, prior_path="runs/x/priors/mnist_subset_vae.safetensors")

See ``prior.py`` (what counts as public auxiliary data, the VAE, safetensors storage) and ``invert.py``.
"""

from fedsim.attacks.generative.invert import OPTIONS, invert_generative, invert_ggl, invert_gias
from fedsim.attacks.generative.prior import (ARCHS, AUX_PARTS, DEFAULT_ARCH, KINDS, TRAIN_HINT, TRAIN_KEYS, Decoder,
                                             Prior, PriorMissing, arch_prior_path, aux_split, default_prior_path,
                                             get_prior, load_prior, parse_archs, save_prior, stale_reasons,
                                             train_prior, train_settings)

__all__ = ["OPTIONS", "invert_generative", "invert_ggl", "invert_gias", "ARCHS", "AUX_PARTS", "DEFAULT_ARCH",
           "KINDS", "TRAIN_HINT", "TRAIN_KEYS", "Decoder", "Prior", "PriorMissing", "arch_prior_path", "aux_split",
           "default_prior_path", "get_prior", "load_prior", "parse_archs", "save_prior", "stale_reasons", "train_prior",
           "train_settings"]
