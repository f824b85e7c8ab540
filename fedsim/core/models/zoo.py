"""Model registry: FCN-3, LeNet-5 (choice of activation), a small ConvNet (optional BatchNorm),
ResNet-18 with a CIFAR stem and VGG-16 (torchvision, ``weights=None``). Any input shape and class count.

FCN-3 and LeNet-5 follow the iLRG paper's setups (Ma et al., ICLR 2023); LeNet-5 with Sigmoid is the
DLG victim (Zhu et al., 2019).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from fedsim.core.objref import is_ref, load_object

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "swish": nn.SiLU,
    "silu": nn.SiLU,
    "leakyrelu": lambda: nn.LeakyReLU(0.2),
    "tanh": nn.Tanh,
}


def _activation(name: str) -> nn.Module:
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"model.activation: {name!r} is not one of {sorted(ACTIVATIONS)}") from None


def _flat_dim(input_shape: tuple[int, ...]) -> int:
    return int(math.prod(input_shape))


class FCN(nn.Module):
    """Fully connected network; FCN-3 (iLRG App. B) is one hidden layer between input and classifier."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, hidden: tuple[int, ...] = (1000,),
                 activation: str = "relu") -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = _flat_dim(input_shape)
        for h in hidden:
            layers += [nn.Linear(width, h), _activation(activation)]
            width = h
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class LeNet5(nn.Module):
    """LeNet-5 as used by DLG / iLRG: three 5x5 stride-2/1 convolutions with 12 channels, then a linear
    classifier. ``activation`` picks ReLU, Sigmoid (DLG), Swish (iLRG's negative-activation case) etc."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, activation: str = "sigmoid",
                 width: int = 12) -> None:
        super().__init__()
        c, h, w = input_shape
        self.features = nn.Sequential(
            nn.Conv2d(c, width, 5, padding=2, stride=2), _activation(activation),
            nn.Conv2d(width, width, 5, padding=2, stride=2), _activation(activation),
            nn.Conv2d(width, width, 5, padding=2, stride=1), _activation(activation),
            nn.Flatten(),
        )
        with torch.no_grad():
            dim = self.features(torch.zeros(1, c, h, w)).shape[1]
        self.classifier = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class ConvNet(nn.Module):
    """Small ConvNet (two conv blocks + linear), optional BatchNorm: the default FL workload."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, width: int = 16, batchnorm: bool = False,
                 activation: str = "relu") -> None:
        super().__init__()
        c = input_shape[0]

        def block(cin: int, cout: int) -> list[nn.Module]:
            layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1)]
            if batchnorm:
                layers.append(nn.BatchNorm2d(cout))
            return layers + [_activation(activation), nn.MaxPool2d(2)]

        self.features = nn.Sequential(*block(c, width), *block(width, 2 * width), nn.Flatten())
        with torch.no_grad():
            self.features.eval()
            dim = self.features(torch.zeros(1, *input_shape)).shape[1]
            self.features.train()
        self.classifier = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def _resnet18(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """torchvision ResNet-18 (``weights=None``) with the CIFAR stem: 3x3 conv, no max-pool."""
    from torchvision.models import resnet18

    model = resnet18(weights=None, num_classes=num_classes)
    model.conv1 = nn.Conv2d(input_shape[0], 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


def _vgg16(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """torchvision VGG-16 (``weights=None``); the first conv takes any channel count."""
    from torchvision.models import vgg16

    model = vgg16(weights=None, num_classes=num_classes)
    if input_shape[0] != 3:
        model.features[0] = nn.Conv2d(input_shape[0], 64, kernel_size=3, padding=1)
    return model


MODELS: dict[str, Callable[..., nn.Module]] = {
    "fcn3": FCN,
    "lenet5": LeNet5,
    "convnet": ConvNet,
    "resnet18": _resnet18,
    "vgg16": _vgg16,
}


def model_factory(name: str) -> Callable[..., nn.Module]:
    """A zoo model's constructor, or the user's factory named ``package.module:factory`` (``fedsim.core.objref``)."""
    if is_ref(name):
        return load_object("model.name", name)
    if name not in MODELS:
        raise ValueError(f"model.name: {name!r} is not one of {sorted(MODELS)} or a 'package.module:factory'")
    return MODELS[name]


def build_model(name: str, input_shape: tuple[int, ...], num_classes: int, seed: int | None = None,
                **options) -> nn.Module:
    """Build a zoo model or a user's factory, both called as ``factory(input_shape=(C, H, W), num_classes=K,
    **options)``; ``seed`` makes the initial weights deterministic (the global RNG is restored afterwards)."""
    factory = model_factory(name)
    if seed is None:
        return factory(input_shape=tuple(input_shape), num_classes=num_classes, **options)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory(input_shape=tuple(input_shape), num_classes=num_classes, **options)


def classifier_layer(model: nn.Module) -> nn.Linear:
    """The last ``nn.Linear`` of the model: the classification layer that label restoration reads."""
    last = None
    for module in model.modules():
        if isinstance(module, nn.Linear):
            last = module
    if last is None:
        raise ValueError(f"{type(model).__name__} has no nn.Linear classifier")
    return last
