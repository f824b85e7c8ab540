"""Optional experiment tracking (issue 23): a run folder's rows and reconstruction grids exported to TensorBoard
and MLflow, each read back with its own library from a local folder (skipped when the `tracking` extra is not
installed)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from fedsim.core.config import from_flat, to_toml
from fedsim.core.errors import ConfigError
from fedsim.lab.tracking import export, export_after_run, grids, scalars
from fedsim.core.rows import InversionRow, LabelRow, PrivacyRow, UtilityRow
from fedsim.core.runfolder import RunFolder

ACC = {0: 0.1, 1: 0.42, 2: 0.61, 3: 0.7}
LNACC = {(1, 0): 0.5, (1, 1): 0.75, (3, 0): 1.0}  # (round, client) -> ilrg LnAcc
PSNR = {(1, 0): 12.5, (3, 0): 14.0}


def _run(tmp_path: Path) -> RunFolder:
    from PIL import Image

    folder = RunFolder(tmp_path / "run")
    folder.root.mkdir(parents=True)
    folder.config.write_text(to_toml(from_flat({"run.name": "tracked", "run.num_rounds": 3})))
    for r, acc in ACC.items():
        folder.append(UtilityRow(round=r, test_accuracy=acc, test_loss=2.0 - acc))
    for (r, c), v in LNACC.items():
        folder.append(LabelRow(round=r, client=c, method="ilrg", ok=True, label_lnacc=v, label_leacc=1.0))
    folder.append(LabelRow(round=1, client=0, method="gi", ok=False, error="crashed"))  # not a value
    folder.append(LabelRow(round=1, client=0, method="ilrg", ok=True, label_lnacc=0.25, replay=True))
    folder.images.mkdir()
    for (r, c), v in PSNR.items():
        image = folder.image(r, c, "ig")
        Image.new("RGB", (20 + c, 10), (r * 40, 0, 0)).save(folder.root / image)
        folder.append(InversionRow(round=r, client=c, method="ig", ok=True, psnr=v, ssim=0.1, image=str(image)))
    folder.append(PrivacyRow(round=1, epsilon=1.5, delta=1e-5, accountant="rdp", mechanism="central_dp"))
    folder.append(PrivacyRow(round=2, epsilon=math.inf, delta=1e-5, accountant="rdp", mechanism="central_dp"))
    return folder


def _expected() -> dict[str, list[tuple[int, float]]]:
    return {"utility/test_accuracy": sorted(ACC.items()),
            "utility/test_loss": [(r, 2.0 - a) for r, a in sorted(ACC.items())],
            "label/ilrg/lnacc": [(1, 0.625), (3, 1.0)], "label/ilrg/leacc": [(1, 1.0), (3, 1.0)],
            "replay/label/ilrg/lnacc": [(1, 0.25)],
            "inversion/ig/psnr": [(1, 12.5), (3, 14.0)], "inversion/ig/ssim": [(1, 0.1), (3, 0.1)],
            "privacy/central_dp/epsilon": [(1, 1.5)]}


def _assert_close(got: dict, want: dict, rel: float = 1e-9) -> None:
    """Same tags, the same steps per tag, values within ``rel`` (float32 in an event file)."""
    assert sorted(got) == sorted(want)
    for tag in want:
        assert [s for s, _ in got[tag]] == [s for s, _ in want[tag]], tag
        assert [v for _, v in got[tag]] == pytest.approx([v for _, v in want[tag]], rel=rel), tag


def test_the_scalars_are_the_rows_per_round(tmp_path):
    got: dict[str, list[tuple[int, float]]] = {}
    for s in scalars(_run(tmp_path)):
        got.setdefault(s.tag, []).append((s.step, s.value))
    _assert_close(got, _expected())
    assert [(g.tag, g.step) for g in grids(_run(tmp_path / "b"))] == [
        ("reconstruction/ig/client_0", 1), ("reconstruction/ig/client_0", 3)]


def test_tracking_is_off_by_default_and_checked_by_the_schema(tmp_path):
    cfg = from_flat({})
    assert cfg.tracking.backend == "none"
    assert export_after_run(tmp_path, cfg) is None and not any(tmp_path.iterdir())
    with pytest.raises(ConfigError, match=r"^tracking.backend: 'wandb' is not one of none, tensorboard, mlflow"):
        from_flat({"tracking.backend": "wandb"})


def test_a_missing_library_is_a_one_line_error_naming_the_key(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(ConfigError, match=r"^tracking.backend: 'mlflow' needs the mlflow package.*\[tracking\]"):
        export(_run(tmp_path).root, "mlflow")


def test_tensorboard_event_files_hold_the_rows_and_the_grids(tmp_path):
    pytest.importorskip("tensorboard", reason="the optional 'tracking' extra (tensorboard) is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    folder = _run(tmp_path)
    done = export(folder.root, "tensorboard")
    assert done.target == str(folder.tensorboard) and done.images == 2
    acc = EventAccumulator(str(folder.tensorboard), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    got = {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    _assert_close(got, _expected(), rel=1e-6)  # float32 in the event file
    images = acc.Images("reconstruction/ig/client_0")
    assert [(e.step, e.width, e.height) for e in images] == [(1, 20, 10), (3, 20, 10)]


def test_mlflow_file_store_holds_the_metric_history_and_the_grids(tmp_path):
    pytest.importorskip("mlflow", reason="the optional 'tracking' extra (mlflow) is not installed")
    from mlflow.tracking import MlflowClient

    folder = _run(tmp_path)
    uri = (tmp_path / "store").resolve().as_uri()  # file:///...: a local file store
    done = export(folder.root, "mlflow", target=uri)
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(done.run_id)
    assert run.info.run_name == "tracked" and run.data.params["run.num_rounds"] == "3"
    _assert_close({tag: sorted((m.step, m.value) for m in client.get_metric_history(done.run_id, tag))
                   for tag in _expected()}, _expected())
    assert sorted(Path(a.path).name for a in client.list_artifacts(done.run_id, "reconstructions/ig")) == [
        "r0001_c0000_ig.png", "r0003_c0000_ig.png"]


def test_mlflow_sqlite_store_keeps_the_artifacts_in_the_run_folder(tmp_path, monkeypatch):
    pytest.importorskip("mlflow", reason="the optional 'tracking' extra (mlflow) is not installed")
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)  # nothing may land in the current folder
    folder = _run(tmp_path / "a")
    uri = f"sqlite:///{(tmp_path / 'mlflow.db').resolve()}"
    done = export(folder.root, "mlflow", target=uri)
    history = MlflowClient(tracking_uri=uri).get_metric_history(done.run_id, "inversion/ig/psnr")
    assert sorted((m.step, m.value) for m in history) == [(1, 12.5), (3, 14.0)]
    assert len(list((folder.root / "mlartifacts").rglob("*.png"))) == 2 and not (tmp_path / "mlruns").exists()
