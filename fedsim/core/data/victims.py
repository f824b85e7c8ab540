"""The 20 real test images per set shipped in the foolbox wheel: colour victims for inversion benchmarks."""

from __future__ import annotations

import re

import numpy as np
import torch

from fedsim.core.data.sources import CIFAR10_NORM, CIFAR100_NORM, FASHION_NORM, MNIST_NORM, package_file

# set name -> (file prefix, number of classes, normalisation)
VICTIM_SETS = {
    "mnist": ("mnist", 10, MNIST_NORM),
    "fashion_mnist": ("fashionMNIST", 10, FASHION_NORM),
    "cifar10": ("cifar10", 10, CIFAR10_NORM),
    "cifar100": ("cifar100", 100, CIFAR100_NORM),
    "imagenet": ("imagenet", 1000, ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))),
}


def load_victims(name: str, size: int | None = None) -> tuple[torch.Tensor, torch.Tensor, int, tuple, tuple]:
    """Return (images in [0,1] as [20, C, H, W], labels, num_classes, mean, std) for a foolbox image set.

    ``size`` resizes (bilinear) to ``size x size`` (ImageNet images are 224x224).
    """
    if name not in VICTIM_SETS:
        raise ValueError(f"victims: {name!r} is not one of {sorted(VICTIM_SETS)}")
    prefix, num_classes, (mean, std) = VICTIM_SETS[name]
    folder = package_file("foolbox", "data", install_hint="pip install foolbox")
    from PIL import Image

    pattern = re.compile(rf"^{prefix}_(\d+)_(\d+)\.(png|jpg)$")
    entries = sorted((int(m.group(1)), int(m.group(2)), p) for p in folder.iterdir()
                     if (m := pattern.match(p.name)))
    if not entries:
        raise FileNotFoundError(f"no {prefix}_*.png/jpg images in {folder}")
    images, labels = [], []
    for _, label, path in entries:
        arr = np.asarray(Image.open(path), dtype=np.float32) / 255.0
        t = torch.from_numpy(arr)
        t = t.unsqueeze(0) if t.ndim == 2 else t.permute(2, 0, 1)
        if size is not None and tuple(t.shape[-2:]) != (size, size):  # per image: the ImageNet files differ in size
            t = torch.nn.functional.interpolate(t[None], size=(size, size), mode="bilinear", align_corners=False,
                                                antialias=True)[0]
        images.append(t)
        labels.append(label)
    shapes = sorted({tuple(t.shape) for t in images})
    if len(shapes) > 1:
        raise ValueError(f"victims: the {name} images differ in size ({shapes[0]} ... {shapes[-1]}); pass size=")
    x = torch.stack(images)
    return x.contiguous(), torch.tensor(labels, dtype=torch.int64), num_classes, mean, std
