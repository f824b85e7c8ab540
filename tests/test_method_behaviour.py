"""Issue 34, "methods own their behaviour": what a method needs is an enum on its record, what it reports (its
signals, how its trace is read) lives on the record, so a new self-tuned method reaches the rows' signals with
no change to the generic pipeline; and no attack module imports by a variable string.

Checked against the old code (``git archive e207b39`` unpacked in /tmp, run with PYTHONPATH): there ``Need`` does
not exist (the module fails to import), ``AttackMethod`` takes no ``trace_signals`` / ``signals``, the pipeline read
only the built-in methods' trace keys, and ``attacks/inversion/methods.py`` defines ``_lazy``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from fedsim.attacks.inversion import INVERSION_METHODS, register_inversion_method
from fedsim.attacks.inversion.core import InversionTrace
from fedsim.attacks.labels import LABEL_METHODS
from fedsim.attacks.records import NEEDS, AttackMethod, Need

ROOT = Path(__file__).resolve().parents[1]


def test_every_need_is_a_member_of_the_enum_and_a_plugins_strings_are_typed():
    for registry in (LABEL_METHODS, INVERSION_METHODS):
        for record in registry.values():
            assert all(isinstance(n, Need) for n in record.needs), record.name
    assert set(NEEDS) == set(Need)
    record = AttackMethod("toy", "label", "a toy (2026)", "s", lambda *a, **k: None, needs=("public split",))
    assert record.needs == (Need.PUBLIC_SPLIT,) and record.needs[0] == "public split"
    with pytest.raises(ValueError, match="needs \\['public splits'\\] are not among"):
        AttackMethod("toy", "label", "a toy (2026)", "s", lambda *a, **k: None, needs=("public splits",))


def _toy_inversion(*, model, gradients=None, labels=None, input_shape, num_samples, return_result=False, **_):
    """Toy self-tuned inversion (2026): zeros, and a trace saying which knob it chose."""
    x = torch.zeros(num_samples, *input_shape)
    trace = InversionTrace(method="toy-tuned", inputs=x, labels=labels, best_loss=0.0, history=[], steps=0,
                           seconds=0.0, seconds_per_step=0.0, options={"knob_chosen": 7})
    return trace if return_result else x


@pytest.fixture
def toy_tuned():
    record = register_inversion_method(AttackMethod(
        "toy-tuned", "inversion", "a toy of this test (2026)", "zeros, tuned", _toy_inversion, traces=True,
        signals=("public split",),
        trace_signals=lambda trace, k: [f"self-tuned: knob {trace.options['knob_chosen']} for {k} images"]))
    yield record
    INVERSION_METHODS.pop(record.name)


def test_a_new_self_tuned_method_reports_its_signals_through_its_record(tmp_path, toy_tuned):
    from fedsim.attacks.pipeline import AttackPlan, DataSpec, attack_update
    from fedsim.core.captures import iter_captures, load_update
    from fedsim.core.experiment import make_model
    from tests.runfolder import make_run

    cfg, run = make_run(tmp_path / "run")
    update = load_update(next(iter(iter_captures(run))))
    plan = AttackPlan(label_methods=("ilrg",), inversion="toy-tuned", max_inversion_images=64)
    spec = DataSpec((1, 8, 8), 10, (0.5,), (0.5,))
    results = attack_update(update, lambda: make_model(cfg), plan, spec)
    inversion = results[-1]
    assert inversion.ok, inversion.error
    k = len(inversion.reconstruction)
    assert "public split" in inversion.signals  # the record's own signal, no aux= in its options
    assert f"self-tuned: knob 7 for {k} images" in inversion.signals


def test_no_attack_module_imports_by_a_variable_string():
    """The ``_lazy(module, attr)`` helper of ``attacks/inversion/methods.py`` is gone (it hid two import circles
    from the architecture test); only the plugin importer may import a computed name."""
    offenders = []
    for path in (ROOT / "attacks").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.name == "_lazy":
                offenders.append(f"{path.relative_to(ROOT)}: def _lazy")
            if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                    "import_module", "__import__") and path.name != "plugins.py":
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, offenders
