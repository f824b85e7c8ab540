"""Capture files are never unpickled (import rules: tests/test_architecture.py)."""

import pickle
from pathlib import Path

import pytest
import torch

from fedsim.core.captures import load_update, save_update
from fedsim.core.types import ClientUpdate, InvalidUpdateError

ROOT = Path(__file__).resolve().parents[1]


class Boom:
    def __reduce__(self):
        return (Path(ROOT / "tests" / "PWNED").touch, ())


def test_planted_pickle_is_not_executed(tmp_path):
    path = tmp_path / "client_0000.safetensors"
    path.write_bytes(pickle.dumps(Boom()))
    with pytest.raises(Exception):
        load_update(path)
    assert not (ROOT / "tests" / "PWNED").exists()


def test_capture_roundtrip(tmp_path):
    w = {"a": torch.randn(3, 2), "b": torch.randn(2)}
    u = ClientUpdate(run_id="r", server_round=2, client_id=5, algorithm="fedsgd", weights_before=w,
                     weights_after={k: v + 1 for k, v in w.items()}, lr=0.1, local_epochs=1, local_steps=1,
                     batch_size=4, num_examples=4, defenses={"dp": {"clip": 1.0}})
    back = load_update(save_update(u, tmp_path / "c.safetensors"))
    assert back.client_id == 5 and back.defenses == {"dp": {"clip": 1.0}}
    assert list(back.weights_before) == ["a", "b"]
    assert torch.equal(back.weights_after["a"], u.weights_after["a"])


def test_client_update_rejects_bad_values():
    w = {"a": torch.zeros(2)}
    with pytest.raises(InvalidUpdateError, match="lr"):
        ClientUpdate(run_id="r", server_round=1, client_id=0, algorithm="fedavg", weights_before=w,
                     weights_after=w, lr=float("nan"), local_epochs=1, local_steps=1, batch_size=1, num_examples=1)
