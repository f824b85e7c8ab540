import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture
def one_thread():
    """Tiny models: one intra-op thread is faster on a shared CPU (restored afterwards). Opt in per module with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def seeded():
    """Torch's global RNG seeded for one test and restored afterwards: a test's unseeded draws (``torch.rand``,
    weight init) no longer depend on which tests ran before it. Opt in per module with
    ``pytestmark = pytest.mark.usefixtures("seeded")``. Not seed 0: the inversion engine draws its initial point
    from ``Generator().manual_seed(seed)``, and data drawn with the same seed would be the init itself."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(12345)
        yield
