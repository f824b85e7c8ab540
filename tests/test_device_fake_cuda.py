"""Device discipline, checked on CPU (issue 33, check b): the tensor-only functions of the attack and scoring path
run on fake ``cuda`` tensors (PyTorch's ``FakeTensorMode``: shapes, dtypes and devices without data or a GPU) and
raise nothing. A tensor made on the CPU in the middle of them meets a cuda tensor and raises
``FakeTensorDeviceMismatchError``, as it would on a real GPU.

Fake tensors hold no values, so a read of one to the host (``float(t)``, ``int(t)``, ``t.tolist()``) answers a
constant here (``_HostReads``: 1, 1.0, True; ``torch.equal`` False), and an op whose output size depends on
values (``bincount``, ``repeat_interleave``) answers a tensor of a fixed size on its input's device, which lets the
code run on past its Python branches; the metrics' one numpy crossing (``fedsim.core.metrics.images.host_array``, for scipy's assignment solver)
is replaced by a stub that first asserts the tensor reached it on the device. Every tensor is created inside the
mode (``allow_non_fake_inputs=False``); the model on fake cuda is built under ``torch.device("cuda")`` (``Module.to``
cannot swap fake parameters).
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode

from fedsim.attacks.gradients import fake_gradient
from fedsim.attacks.inversion.bn_buffers import statistics_from_update
from fedsim.attacks.inversion.shadow import aligned_psnr
from fedsim.attacks.labels import restore_labels
from fedsim.attacks.labels.common import dummy_inputs
from fedsim.core.metrics import images
from fedsim.core.models.zoo import build_model
from fedsim.core.types import ClientUpdate
from fedsim.evaluation.identify import Identify, PublicClassifier, identify_scores, reidentification
from fedsim.evaluation.scoring import chance_psnr, padded

SHAPE, CLASSES, K = (1, 8, 8), 4, 3
MEAN, STD = (0.5,), (0.25,)
CUDA = torch.device("cuda:0")


class _HostReads(TorchDispatchMode):
    """A read of a fake tensor to the host answers a constant (the fake tensor has no value to give)."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            t = args[0]
            return True if t.dtype == torch.bool else (1.0 if t.is_floating_point() else 1)
        if func is torch.ops.aten.equal.default:
            return False
        kwargs = kwargs or {}
        if func is torch.ops.aten.bincount.default:  # output size depends on values: one of a fixed size
            minlength = kwargs.get("minlength", args[2] if len(args) > 2 else 0)
            return torch.zeros(max(int(minlength), 1), dtype=torch.long, device=args[0].device)
        if func is torch.ops.aten.repeat_interleave.Tensor:  # (counts -> labels): one entry per count
            return torch.zeros(len(args[0]), dtype=torch.long, device=args[0].device)
        return func(*args, **kwargs)


@pytest.fixture
def fake_cuda(monkeypatch):
    def host_array(t: torch.Tensor) -> np.ndarray:
        assert t.device == CUDA, f"reached the host crossing on {t.device}, not on the attack's device"
        return np.zeros(tuple(t.shape), dtype=np.int64 if not t.is_floating_point() else np.float64)

    monkeypatch.setattr(images, "host_array", host_array, raising=False)
    with contextlib.ExitStack() as stack:
        stack.enter_context(FakeTensorMode(allow_non_fake_inputs=False))
        stack.enter_context(_HostReads())
        yield


def _cuda(*shape: int, dtype=torch.float32) -> torch.Tensor:
    return torch.empty(*shape, device=CUDA, dtype=dtype)


def _model(dtype=torch.float32, batchnorm: bool = False):
    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(CUDA):
            return build_model("convnet", SHAPE, CLASSES, seed=1, width=4, batchnorm=batchnorm).train()
    finally:
        torch.set_default_dtype(before)


def _labels(n: int = K) -> torch.Tensor:
    return torch.zeros(n, dtype=torch.long, device=CUDA)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_pixels_psnr_ssim_on_the_device(fake_cuda, dtype):
    x = _cuda(K, *SHAPE, dtype=dtype)
    px = images.to_pixels(x, MEAN, STD)
    assert px.device == CUDA and px.dtype == torch.float64
    assert images.psnr_matrix(px, px).device == CUDA
    assert images.ssim_matrix(px, px).device == CUDA and images.ssim_pairs(px, px).shape == (K,)


def test_alignment_and_image_metrics_on_the_device(fake_cuda):
    rec, gt = _cuda(K, *SHAPE), _cuda(K, *SHAPE)
    perm, aware = images.align(images.to_pixels(rec, MEAN, STD), images.to_pixels(gt, MEAN, STD), _labels(),
                               _labels())
    assert sorted(perm) == list(range(K)) and aware
    out = images.image_metrics(rec, gt, MEAN, STD, labels_hat=_labels(), labels_true=_labels())
    assert len(out["psnr_per_image"]) == K and out["label_aware"]
    assert isinstance(images.permutation_agnostic_ssim(images.to_pixels(rec, MEAN, STD),
                                                       images.to_pixels(gt, MEAN, STD)), float)


def test_scoring_helpers_and_the_shadow_score_on_the_device(fake_cuda):
    rec, gt = _cuda(K - 1, *SHAPE), _cuda(K, *SHAPE)
    full, labels = padded(rec, _labels(K - 1), K)
    assert full.device == CUDA and labels.device == CUDA and full.shape[0] == K
    assert isinstance(chance_psnr(gt, MEAN, STD), float)
    assert isinstance(aligned_psnr(_cuda(K, *SHAPE), gt, MEAN, STD), float)


def test_identification_on_the_device(fake_cuda):
    with torch.device(CUDA):
        classifier = PublicClassifier(SHAPE[0], CLASSES).eval()
    # an empty pool: the copy filter (a boolean mask: its size depends on values) is skipped, fake tensors
    # cannot size it
    rec, x_true, pool = _cuda(K, *SHAPE), _cuda(K, *SHAPE), _cuda(0, *SHAPE)
    out = identify_scores(rec, list(range(K)), x_true, _labels(), MEAN, STD, Identify(classifier, pool))
    assert set(out) == {"ident_class_acc", "ident_class_chance", "ident_reid_acc", "ident_reid_chance"}
    acc, chance, size = reidentification(_cuda(K, *SHAPE), _cuda(K, *SHAPE), pool)
    assert size == K and chance == pytest.approx(1.0 / K)


def _update(model: torch.nn.Module, batchnorm_buffers: bool = False) -> ClientUpdate:
    before = {n: torch.empty_like(p) for n, p in model.named_parameters()}
    after = {n: torch.empty_like(p) for n, p in model.named_parameters()}
    kw = {}
    if batchnorm_buffers:  # num_batches_tracked left out: T then comes from local_steps (no host read of it)
        kw = {key: {n: torch.empty_like(b) for n, b in model.named_buffers() if "num_batches" not in n}
              for key in ("buffers_before", "buffers_after")}
    return ClientUpdate("run", 1, 0, "fedsgd", before, after, lr=0.1, local_epochs=1, local_steps=1,
                        batch_size=K, num_examples=K, **kw)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fake_gradient_and_bn_statistics_on_the_device(fake_cuda, dtype):
    model = _model(dtype, batchnorm=True)
    update = _update(model, batchnorm_buffers=True)
    grads = fake_gradient(update, model)
    assert all(g.device == CUDA and g.dtype == dtype for g in grads)
    stats = statistics_from_update(model, update.buffers_before, update.buffers_after, 1, K, SHAPE)
    assert stats is not None
    assert all(t.device == CUDA and t.dtype == dtype for layer in stats.stats for t in layer)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("dummy", ["normal", "uniform"])
def test_dummy_inputs_follow_the_model(fake_cuda, dtype, dummy):
    x = dummy_inputs(_model(dtype), 5, {"input_shape": SHAPE, "dummy": dummy})
    assert x.device == CUDA and x.dtype == dtype and x.shape == (5, *SHAPE)


@pytest.mark.parametrize("method", ["geng", "geng-bias", "llg+"])
def test_dummy_forward_label_methods_on_the_device(fake_cuda, method):
    model = _model()
    grads = [torch.empty_like(p) for p in model.parameters()]
    res = restore_labels(method, model=model, gradients=grads, num_samples=K, input_shape=SHAPE)
    assert res.counts.device == CUDA and res.labels.device == CUDA
    assert res.probabilities is None or res.probabilities.device == CUDA
