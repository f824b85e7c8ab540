"""Device discipline, checked on CPU (issue 33, check c): a static rule (``tests/device_rules.py``) over ``attacks/``,
``fedsim/core/metrics/``, ``fedsim/evaluation/`` and ``fedsim/lab/report/``: no ``.numpy()`` without ``.cpu()``
before it, no tensor factory without ``device=`` outside the allow-list (each entry with its reason), and the rule
itself flags a probe."""

from __future__ import annotations

import device_rules as rules

PROBE = '''
import torch
def bad(x):
    a = torch.zeros(3)                          # factory without device
    b = torch.arange(len(x), dtype=torch.long)  # factory without device
    c = (x * 2).numpy()                         # numpy without cpu
    return a, b, c

def good(x):
    a = torch.zeros(3, device=x.device)
    b = torch.randn(4, generator=torch.Generator().manual_seed(0)).to(x.device)
    like = dict(dtype=x.dtype, device=x.device)
    e = torch.eye(3, **like)
    return a, b, e, x.detach().cpu().numpy(), x.cpu()[0].numpy()
'''


def test_the_rule_flags_the_probe_and_passes_its_good_twin():
    found = rules.check_source(PROBE)
    assert sorted((f.function, f.kind, f.call) for f in found) == [
        ("bad", "factory", "torch.arange"), ("bad", "factory", "torch.zeros"), ("bad", "numpy", ".numpy")]


def test_a_stale_allow_entry_is_a_finding(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_text("def f(x):\n    return x\n")
    found = rules.check_tree(tmp_path, ("pkg",), {("pkg/m.py", "f", "torch.zeros"): "was here once"})
    assert [f.kind for f in found] == ["stale-allow"]


def test_attack_metric_and_evaluation_code_follows_its_inputs_device():
    found = rules.check_tree()
    assert not found, "tensors made on the host in device code:\n" + "\n".join(map(str, found))
    assert all(len(reason) > 30 for reason in rules.ALLOWED.values())
