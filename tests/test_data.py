import pytest
import torch

from fedsim.core.data import DatasetUnavailable, load_dataset, load_victims
from fedsim.core.data.sources import FASHION_DEBIAN_DIR


def test_mnist_subset_is_real_and_split():
    ds = load_dataset("mnist_subset")
    assert ds.train_x.shape == (4000, 1, 28, 28) and ds.test_x.shape == (1000, 1, 28, 28)
    assert torch.equal(ds.train_y.bincount(), torch.full((10,), 400))
    assert 0.0 <= float(ds.train_x.min()) and float(ds.train_x.max()) <= 1.0
    x = ds.normalize(ds.train_x[:4])
    torch.testing.assert_close(ds.denormalize(x), ds.train_x[:4])


def test_digits():
    ds = load_dataset("digits")
    assert ds.input_shape == (1, 8, 8) and ds.num_classes == 10
    assert len(ds.train_x) + len(ds.test_x) == 1797


def test_unknown_dataset_names_choices():
    with pytest.raises(ValueError, match="mnist_subset"):
        load_dataset("svhn")


def test_missing_files_fail_loudly_with_instructions(tmp_path):
    with pytest.raises(DatasetUnavailable, match="apt-get install -y dataset-fashion-mnist"):
        load_dataset("fashion_mnist", tmp_path)
    with pytest.raises(DatasetUnavailable, match="data.data_dir"):
        load_dataset("cifar10")
    with pytest.raises(DatasetUnavailable, match="could not find"):
        load_dataset("cifar10", tmp_path)


@pytest.mark.skipif(not FASHION_DEBIAN_DIR.exists(), reason="Debian dataset-fashion-mnist not installed")
def test_fashion_mnist_from_debian():
    ds = load_dataset("fashion_mnist")
    assert ds.train_x.shape == (60000, 1, 28, 28) and ds.test_x.shape == (10000, 1, 28, 28)


def test_foolbox_victims():
    x, y, c, mean, std = load_victims("cifar10")
    assert x.shape == (20, 3, 32, 32) and c == 10 and len(mean) == 3
    assert int(y.max()) < 10


def test_foolbox_imagenet_victims_of_different_sizes_are_resized_one_by_one():
    """The ImageNet files differ in size (512x512, 683x1024, ...): size= resizes each; without it, one clear error."""
    x, y, c, _, _ = load_victims("imagenet", size=32)
    assert x.shape == (20, 3, 32, 32) and c == 1000 and int(y.max()) < 1000
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert len({float(v) for v in x.flatten(1).std(1)}) == 20  # 20 different images, not one repeated
    with pytest.raises(ValueError, match="differ in size"):
        load_victims("imagenet")
