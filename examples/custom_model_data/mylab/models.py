"""Your model: any ``factory(input_shape, num_classes, **model.options) -> nn.Module`` with K logits."""

import math

from torch import nn


def small_mlp(input_shape, num_classes, hidden=32):
    """A two-layer MLP (ReLU): input_shape is (C, H, W) of the data, num_classes its K."""
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), hidden), nn.ReLU(),
                         nn.Linear(hidden, num_classes))
