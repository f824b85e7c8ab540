"""fedsim.core.device.resolve_device: the run.device setting -> torch.device, with clear errors."""

import pytest
import torch

from fedsim.core.device import resolve_device


def test_cpu_and_auto():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = torch.device("cuda:0") if torch.cuda.is_available() else torch.device("cpu")
    assert resolve_device("auto") == expected
    assert resolve_device(" CPU ") == torch.device("cpu")


@pytest.mark.parametrize("bad", ["gpu", "cuda:", "cuda:x", "mps0", "", "cuda:-1"])
def test_bad_spec_names_the_key_and_choices(bad):
    with pytest.raises(ValueError, match=r"run\.device.*auto, cpu, cuda, cuda:N"):
        resolve_device(bad)


def test_not_a_string():
    with pytest.raises(ValueError, match="run.device"):
        resolve_device(0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised where CUDA is absent")
@pytest.mark.parametrize("spec", ["cuda", "cuda:0", "cuda:3"])
def test_cuda_unavailable_raises(spec):
    with pytest.raises(ValueError, match=r"run\.device.*torch\.cuda\.is_available\(\) is False"):
        resolve_device(spec)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_index_bounds():
    assert resolve_device("cuda") == torch.device("cuda:0")
    with pytest.raises(ValueError, match="visible"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")
