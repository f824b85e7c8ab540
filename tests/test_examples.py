"""The examples run (issue 22): ``examples/custom_model_data`` through ``fedsim.run``, ``examples/custom_defense``
through ``fedsim.sweep``, ``examples/notebook.ipynb`` through ``nbclient`` (this venv's ipykernel), on the CPU."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture
def on_path(monkeypatch):
    """Put an example's folder on sys.path here and on PYTHONPATH for the Flower processes and attack workers."""
    added: list[str] = []

    def put(folder: Path, *modules: str) -> None:
        monkeypatch.syspath_prepend(str(folder))
        monkeypatch.setenv("PYTHONPATH", str(folder) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        added.extend(modules)

    yield put
    for name in [m for m in sys.modules if any(m == a or m.startswith(a + ".") for a in added)]:
        del sys.modules[name]


@pytest.mark.slow
def test_custom_model_data_example_runs(on_path, tmp_path):
    import fedsim
    from fedsim.core.rows import InversionRow, LabelRow

    folder = EXAMPLES / "custom_model_data"
    on_path(folder, "mylab")
    run = fedsim.run(folder / "preset.toml", out=tmp_path / "run")
    cfg = run.config
    assert (cfg.model.name, cfg.data.dataset) == ("mylab.models:small_mlp", "mylab.data:digits")
    update = run.update(1, 0)
    assert update.weights_before["1.weight"].shape == (32, 64)  # hidden 32 x the digits' 1 x 8 x 8
    labels = run.rows(LabelRow)
    assert len(labels) == 2 * 3 * 2 and all(r.ok for r in labels)  # 2 rounds x 3 clients x (ilrg, gi)
    inversions = run.rows(InversionRow)
    assert len(inversions) == 6 and all(r.ok and r.psnr is not None for r in inversions)


@pytest.mark.slow
def test_custom_defense_example_sweeps_its_option_against_the_built_in_attacks(on_path, tmp_path):
    import fedsim

    folder = EXAMPLES / "custom_defense"
    on_path(folder, "shrink")
    result = fedsim.sweep(folder / "sweep.toml", out=tmp_path / "sweep")
    by_label = {r["label"]: r for r in result.rows}
    assert sorted(by_label) == ["shrink_mod (factor 1, noise 0)", "shrink_mod (factor 1, noise 0.01)"]
    for r in by_label.values():  # the built-in attacks scored on every update of both settings
        assert r["attacked_updates"] == 4 and r["psnr_by_method"].keys() == {"ig"} and r["label_by_method"]["ilrg"] >= 0
    runs = sorted((tmp_path / "sweep").glob("*/seed_0/config.toml"))
    noises = sorted(json.loads(fedsim.load_run(r.parent).config.defense.custom.options)["noise"] for r in runs)
    assert noises == [0.0, 0.01]
    for r in runs:
        rows = fedsim.load_run(r.parent).rows("inversion")
        assert len(rows) == 4 and all(row.defenses["defense.custom.mods"] == "shrink:shrink_mod" for row in rows)


@pytest.mark.slow
def test_notebook_runs_a_federation_attacks_it_and_plots(tmp_path):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(EXAMPLES / "notebook.ipynb", as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(tmp_path)}}).execute()
    seconds = time.perf_counter() - start
    print(f"notebook: {seconds:.1f} s")
    assert (tmp_path / "leakage_vs_rounds.png").stat().st_size > 1000
    out = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    assert out.startswith("3 rounds; report:"), out
    assert any("image/png" in o.get("data", {}) for o in nb.cells[-1].outputs)
