"""``fedsim data get``: torchvision's real download path, one line when the host cannot be reached, the valid
names on a wrong one, the config lines on success; the loaders themselves never download."""

from __future__ import annotations

import inspect
import urllib.request
from urllib.error import URLError

import pytest

from fedsim.lab.cli import main


@pytest.mark.parametrize("name, host", [("cifar10", "www.cs.toronto.edu"),
                                        ("mnist", "ossci-datasets.s3.amazonaws.com")])
def test_unreachable_host_is_one_line_and_exit_1(name, host, tmp_path, monkeypatch, capsys):
    def offline(*args, **kwargs):
        raise URLError(OSError(-2, "Name or service not known"))

    monkeypatch.setattr(urllib.request, "urlopen", offline)  # under torchvision's own download code
    assert main(["data", "get", name, "--to", str(tmp_path / "d")]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert err.startswith(f"fedsim data get: could not download {name} from {host}: host unreachable (")
    assert "Name or service not known" in err


def test_unknown_name_lists_the_choices(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["data", "get", "imagenet", "--to", str(tmp_path)])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "invalid choice: 'imagenet'" in err
    assert all(f"'{n}'" in err for n in ("cifar10", "cifar100", "fashion_mnist", "mnist"))


def test_success_prints_the_lines_that_read_the_files(tmp_path, monkeypatch, capsys):
    import torchvision.datasets

    calls = []

    class Fake:
        mirrors = ["http://example.invalid/"]

        def __init__(self, root, train, download):
            calls.append((root, train, download))

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", Fake)
    assert main(["data", "get", "fashion_mnist", "--to", str(tmp_path)]) == 0
    assert calls == [(str(tmp_path), True, True), (str(tmp_path), False, True)]
    assert capsys.readouterr().out.splitlines() == [
        'data.dataset = "fashion_mnist"', f'data.data_dir = "{tmp_path / "FashionMNIST" / "raw"}"']


def test_loaders_never_download():
    from fedsim.core.data import folder, sources, store

    for module in (sources, folder, store):
        assert "download=True" not in inspect.getsource(module)
    assert "download=False" in inspect.getsource(sources)
