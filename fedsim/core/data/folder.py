"""Your own data: ``data.dataset = "folder"`` (a class-per-subfolder image tree, torchvision's ``ImageFolder``
layout) and ``data.dataset = "package.module:loader"`` (a function returning an :class:`ImageDataset`).

**folder.** ``data_dir/<class>/<image>`` (``.png .jpg .jpeg .bmp .gif .tif .tiff .webp``, case-insensitive);
classes are the subfolder names in sorted order (label 0 = first name, as ``ImageFolder``). Images are read with
Pillow: all grayscale -> 1 channel, else RGB (3); resized (bilinear, antialiased) to ``image_size x image_size``
when ``data.image_size > 0``, otherwise they must already share one size. Train/test: when ``data_dir`` holds
exactly the two subfolders ``train`` and ``test``, each is its own class tree (the class names must agree);
otherwise one tree split per class, 20 % to test (``round(0.2 n)`` of each class), with a permutation seeded 0
(``fedsim.core.data.core.stratified_split``: the same split on every machine and for every ``run.seed``).
Normalisation: the per-channel mean and std of the train split.

**loader.** ``loader(data_dir=<Path or None>, **data.options) -> ImageDataset`` (``fedsim.core.data.ImageDataset``:
float32 images in [0, 1] ``[N, C, H, W]``, int64 labels in ``[0, num_classes)``, ``mean``/``std`` per channel).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedsim.core.data.core import ImageDataset, register, stratified_split
from fedsim.core.errors import ConfigError, DatasetUnavailable
from fedsim.core.objref import load_object

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


@register("folder")
def load_folder(data_dir: Path | None = None, image_size: int = 0) -> ImageDataset:
    """Your images: a class-per-subfolder tree (torchvision ImageFolder layout) in data.data_dir."""
    if data_dir is None or not Path(data_dir).is_dir():
        raise DatasetUnavailable(f"data.data_dir: {data_dir} is not a folder; data.dataset = 'folder' reads "
                                 "data_dir/<class>/<image> (or data_dir/train/<class>/... and data_dir/test/...)")
    root = Path(data_dir)
    subs = sorted(p.name for p in root.iterdir() if p.is_dir())
    if subs == ["test", "train"]:
        classes, (tr_x, tr_y) = _read_tree(root / "train", image_size)
        test_classes, (te_x, te_y) = _read_tree(root / "test", image_size, classes)
        if tr_x.shape[1:] != te_x.shape[1:]:
            raise ConfigError(f"data.image_size: train images are {tuple(tr_x.shape[1:])}, test images "
                              f"{tuple(te_x.shape[1:])}; set data.image_size to resize both")
    else:
        classes, (x, y) = _read_tree(root, image_size)
        tr_x, tr_y, te_x, te_y = stratified_split(x, y, 0.2, seed=0)
    mean = tuple(float(v) for v in tr_x.mean(dim=(0, 2, 3)))
    std = tuple(max(float(v), 1e-6) for v in tr_x.std(dim=(0, 2, 3)))
    return ImageDataset(f"folder:{root.name}", tr_x, tr_y, te_x, te_y, len(classes), mean, std)


def _read_tree(root: Path, image_size: int, classes: list[str] | None = None
               ) -> tuple[list[str], tuple[torch.Tensor, torch.Tensor]]:
    from PIL import Image

    names = sorted(p.name for p in root.iterdir() if p.is_dir())
    if classes is not None and names != classes:
        raise DatasetUnavailable(f"data.data_dir: the classes of {root} ({', '.join(names)}) differ from train's "
                                 f"({', '.join(classes)})")
    files = [(label, f) for label, name in enumerate(names) for f in sorted((root / name).rglob("*"))
             if f.suffix.lower() in IMAGE_SUFFIXES]
    if len(names) < 2 or not files:
        raise DatasetUnavailable(f"data.data_dir: {root} needs at least two class subfolders with images "
                                 f"({len(names)} subfolders, {len(files)} images)")
    images = [Image.open(f) for _, f in files]
    mode = "L" if all(im.mode in ("L", "1", "I;16", "I") for im in images) else "RGB"
    arrays = []
    for im, (_, f) in zip(images, files):
        im = im.convert(mode)
        if image_size:
            im = im.resize((image_size, image_size), Image.BILINEAR)
        arrays.append(np.asarray(im, dtype=np.float32) / 255.0)
    sizes = sorted({a.shape[:2] for a in arrays})
    if len(sizes) > 1:
        raise ConfigError(f"data.image_size: the images under {root} differ in size ({sizes[0]} ... {sizes[-1]}, "
                          "height x width); set data.image_size to resize them all")
    x = torch.from_numpy(np.stack(arrays))
    x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
    return names, (x.contiguous(), torch.tensor([label for label, _ in files], dtype=torch.int64))


def load_user_dataset(spec: str, data_dir: Path | None, options: dict[str, Any]) -> ImageDataset:
    """Call the user's ``package.module:loader``; anything but a well-formed ``ImageDataset`` is a one-line
    ``ConfigError`` naming ``data.dataset``."""
    loader = load_object("data.dataset", spec)
    try:
        ds = loader(data_dir=data_dir, **options)
    except Exception as exc:
        text = " ".join(str(exc).split())[:300]
        raise ConfigError(f"data.dataset: {spec!r} raised {type(exc).__name__}: {text}") from None
    if not isinstance(ds, ImageDataset):
        raise ConfigError(f"data.dataset: {spec!r} returned a {type(ds).__name__}, not a fedsim.core.data.ImageDataset")
    check_record(f"data.dataset: {spec!r}", ds)
    return ds


def check_record(what: str, ds: ImageDataset) -> None:
    """Shapes, dtypes and label range of an :class:`ImageDataset` (one-line ``ConfigError``)."""
    problems = []
    for split, x, y in (("train", ds.train_x, ds.train_y), ("test", ds.test_x, ds.test_y)):
        if x.ndim != 4 or not x.is_floating_point():
            problems.append(f"{split}_x must be float [N, C, H, W], is {x.dtype} {tuple(x.shape)}")
        elif y.dtype != torch.int64 or y.shape != (len(x),):
            problems.append(f"{split}_y must be int64 [{len(x)}], is {y.dtype} {tuple(y.shape)}")
        elif len(y) and (int(y.min()) < 0 or int(y.max()) >= ds.num_classes):
            problems.append(f"{split}_y has labels outside [0, {ds.num_classes})")
    if not problems and ds.train_x.shape[1:] != ds.test_x.shape[1:]:
        problems.append(f"train images {tuple(ds.train_x.shape[1:])} and test images {tuple(ds.test_x.shape[1:])} "
                        "differ in shape")
    if not problems and not (len(ds.mean) == len(ds.std) == ds.train_x.shape[1]):
        problems.append(f"mean/std need one value per channel ({ds.train_x.shape[1]})")
    if problems:
        raise ConfigError(f"{what} returned an ImageDataset whose {problems[0]}")


def resize(ds: ImageDataset, size: int) -> ImageDataset:
    """Every image of ``ds`` resized to ``size x size`` (bilinear, antialiased); ``ds`` itself when it already is."""
    if not size or tuple(ds.train_x.shape[-2:]) == (size, size):
        return ds
    import dataclasses

    def r(x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                                               antialias=True).clamp(0, 1).contiguous()

    return dataclasses.replace(ds, train_x=r(ds.train_x), test_x=r(ds.test_x))
