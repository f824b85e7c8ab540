"""Gradient inversion: reconstruct a client's batch from its gradient (FedSGD) or its update (FedAvg).

    from fedsim.attacks.inversion import invert, INVERSION_METHODS
    x_hat = invert("ig", model=model, gradients=grads, labels=labels, input_shape=(3, 32, 32),
                   steps=1000, mean=mean, std=std, seed=0)

``x_hat`` is the reconstructed batch [K, C, H, W] in the model's input space (normalised with mean/std); score
it with :func:`fedsim.core.metrics.images.image_metrics`.

Arguments
* ``model``: the global model the client started from (not modified; BN running stats are read, not changed).
* ``gradients``: tensors aligned with ``list(model.parameters())``: the FedSGD batch-mean gradient, or the
  FedAvg fake gradient (W0 - WT) / (T lr) (``fedsim.attacks.gradients.fake_gradient``).
* ``labels``: LongTensor[K] (e.g. ``restore_labels(...).labels``) or a ``LabelRestoration``; they are
  assigned to the dummy inputs by count (iLRG Sec. 4.4). Methods with ``label_mode="joint"`` (DLG) optimise
  soft labels instead and take K, the number of samples, from ``num_samples=`` (or ``len(labels)``).
* ``steps``: optimisation steps (one objective evaluation each, except L-BFGS with a line search).
* ``mean``, ``std``: normalisation of the model input (per channel); ``seed``: init seed.

FedAvg options (see ``fedsim.attacks.inversion.core.EXTRA_OPTIONS``): ``lr`` (the client's learning rate, *not*
the attack step size, which is ``attack_lr``), ``local_steps`` (T), ``local_batch_size`` (B), and either
``gradients=fake_gradient`` or ``weights_after=`` (dict by parameter name or aligned list) from which
(W0 - WT) / (T lr) is computed. ``fedavg-unrolled`` simulates the T local steps on the dummy batch;
``multi-update`` takes ``updates=[(weights_before, gradient), ...]`` of the same client on the same data.

Every field of :class:`InversionSpec` can be overridden per call (``distance``, ``layer_weights``,
``regularizers`` (old name ``priors`` still accepted), ``optimizer``, ``attack_lr``, ``signed``, ``schedule``,
``box``, ``init``, ``label_mode``, ``target``, ``restarts``, ``batch_restarts``, ``line_search``,
``model_mode``, ``label_lr``, ``normalize_match``, ``regularizer_decay``); unknown options raise ``ValueError``.
``ig``'s TV weight follows the model unless ``regularizers=`` is given (``fedsim.attacks.inversion.methods.ig_tv_for``).

Device and dtype: the attack runs where the model's parameters live (CPU or CUDA) and in their dtype; gradients,
labels and statistics are moved there; the random init comes from a seeded CPU generator, so a seed gives the
same start on every device. Restarts are evaluated together (``torch.func.vmap``).
``return_result=True`` returns an :class:`InversionTrace` (labels, loss history, seconds per step).

The live pipeline adds what else the server saw: the BatchNorm batch statistics solved from the sent buffers
as a BN prior with a self-chosen weight (``fedsim.attacks.inversion.bn_buffers``), and scores every
reconstruction by its own gradient match (``fedsim.attacks.inversion.criterion``).
"""

from __future__ import annotations

from typing import Any

import torch

from fedsim.attacks.inversion.core import EXTRA_OPTIONS, InversionTrace, InversionSpec
from fedsim.attacks.inversion.methods import (INVERSION_METHODS, EngineRun, inversion_record, invert,
                                              register_inversion_method)
from fedsim.attacks.inversion.objectives import DISTANCES
from fedsim.attacks.inversion.optim import INITS, OPTIMIZERS
from fedsim.attacks.inversion.regularizers import REGULARIZERS


__all__ = ["invert", "INVERSION_METHODS", "EngineRun", "inversion_record", "register_inversion_method",
           "InversionSpec", "InversionTrace", "DISTANCES", "REGULARIZERS", "INITS", "OPTIMIZERS", "EXTRA_OPTIONS"]

# the methods built on others register their own records (no module of this package imports them back): the
# generative ggl / gias, ig-auto, ig-shadow
import fedsim.attacks.generative.invert  # noqa: E402,F401
from fedsim.attacks.inversion import autotune as _autotune, shadow as _shadow  # noqa: E402,F401
