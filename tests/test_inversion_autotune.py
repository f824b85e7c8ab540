"""ig-auto (issue 24): the TV weight is chosen per update by the reconstruction's own gradient match, never by
ground truth; the chosen run is exactly ``ig`` at that weight."""

from __future__ import annotations

import pytest
import torch

from fedsim.attacks.gradients import batch_gradient
from fedsim.attacks.inversion import invert
from fedsim.attacks.inversion.autotune import ig_auto
from fedsim.core.models.zoo import build_model

pytestmark = pytest.mark.usefixtures("seeded")


def _case():
    model = build_model("convnet", (1, 8, 8), 4, seed=0, width=4)
    g = torch.Generator().manual_seed(3)
    x = torch.rand(2, 1, 8, 8, generator=g)
    y = torch.tensor([1, 3])
    return model, [t.detach() for t in batch_gradient(model, x, y)], x, y


def test_the_pick_is_the_smallest_matching_distance_and_equals_ig_at_that_weight():
    model, grads, _, y = _case()
    grid = (0.0, 0.5, 50.0)  # 50: the prior swamps the match, so its matching distance is the worst
    trace = ig_auto(model=model, gradients=grads, labels=y, input_shape=(1, 8, 8), steps=40, seed=1,
                    tv_grid=grid, return_result=True)
    crit = trace.options["tv_criterion"]
    assert set(crit) == set(grid) and trace.options["tv_chosen"] == min(crit, key=crit.get)
    assert crit[50.0] > min(crit.values())
    alone = invert("ig", model=model, gradients=grads, labels=y, input_shape=(1, 8, 8), steps=40, seed=1,
                   regularizers={"tv": trace.options["tv_chosen"]})
    assert torch.equal(trace.inputs, alone)


def test_ig_auto_refuses_a_fixed_regularizer_and_an_empty_grid():
    model, grads, _, y = _case()
    with pytest.raises(ValueError, match="chooses the TV weight"):
        ig_auto(model=model, gradients=grads, labels=y, input_shape=(1, 8, 8), steps=2, regularizers={"tv": 1.0})
    with pytest.raises(ValueError, match="empty"):
        ig_auto(model=model, gradients=grads, labels=y, input_shape=(1, 8, 8), steps=2, tv_grid=())
