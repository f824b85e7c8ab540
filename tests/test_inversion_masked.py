"""``cosine-masked`` / ``ig-masked``: the inversion adapted to top-k, matching only the coordinates that were sent."""

import pytest
import torch

from fedsim.attacks.inversion import INVERSION_METHODS
from fedsim.attacks.inversion.objectives import gradient_distance, prepare_distance

pytestmark = pytest.mark.usefixtures("seeded")  # every draw of the global RNG is seeded


def test_masked_cosine_ignores_the_dropped_coordinates():
    gen = torch.Generator().manual_seed(0)
    full = [torch.randn(5, 4, generator=gen), torch.randn(7, generator=gen)]
    sent = [g * (torch.rand(g.shape, generator=gen) < 0.3) for g in full]  # sparsified: zeros were not sent
    assert gradient_distance(full, sent, "cosine") > 1e-3  # the plain cosine pulls the dropped entries to 0 ...
    assert gradient_distance(full, sent, "cosine-masked") == pytest.approx(0.0, abs=1e-6)  # ... the masked not
    other = [torch.randn(g.shape, generator=gen) for g in full]
    w = [1.0, 1.0]
    assert float(prepare_distance("cosine-masked", sent, w)(other)) == pytest.approx(
        float(gradient_distance(other, sent, "cosine-masked")), rel=1e-5)
    assert INVERSION_METHODS["ig-masked"].spec.distance == "cosine-masked"
