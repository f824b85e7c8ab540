"""The headline is the attacker's own pick (lowest criterion, no ground truth), in the sweep and the run report;
the best by ground truth is only a labelled "oracle best" upper bound; no fixed "20 dB recognisable" line."""

from pathlib import Path

import pytest

from fedsim.core.config import ExperimentConfig
from fedsim.core.rows import InversionRow, LabelRow, UtilityRow
from fedsim.core.runfolder import RunFolder
from fedsim.lab.pick import BY_CRITERION, FALLBACK, ORACLE, attacker_picks, oracle_picks, pick_one


def _row(method, client=0, psnr=10.0, criterion=None, **kw):
    return InversionRow(round=1, client=client, method=method, ok=True, psnr=psnr, ssim=psnr / 40,
                        criterion=criterion, criterion_name="gradient loss" if criterion is not None else None, **kw)


def _run(tmp_path: Path) -> Path:
    """Two updates; per update ig has the LOWER criterion but gias the HIGHER PSNR."""
    folder = RunFolder(tmp_path)
    folder.append(UtilityRow(round=1, test_accuracy=0.5, test_loss=1.0))
    for c, (ig, gias) in enumerate(((12.0, 20.0), (14.0, 22.0))):
        folder.append(LabelRow(round=1, client=c, method="ilrg", ok=True, label_lnacc=0.5, label_leacc=0.5))
        folder.append(LabelRow(round=1, client=c, method="gi", ok=True, label_lnacc=0.9, label_leacc=0.9))
        folder.append(_row("gias", c, gias, criterion=0.5, ident_reid_acc=1.0, ident_reid_chance=0.01,
                           label_source="gi"))
        folder.append(_row("ig", c, ig, criterion=0.1, ident_reid_acc=0.25, ident_reid_chance=0.01,
                           ident_class_acc=0.5, ident_class_chance=0.25, label_source="gi"))
    return tmp_path


def test_the_pick_is_the_lowest_criterion_even_when_another_row_scores_higher():
    rows = [_row("gias", psnr=20.0, criterion=0.5), _row("ig", psnr=12.0, criterion=0.1)]
    pick = pick_one(rows, "gias,ig")
    assert pick.row.method == "ig" and pick.rule == BY_CRITERION
    assert oracle_picks(rows)[0].method == "gias"  # the oracle reads PSNR


def test_without_a_criterion_the_pick_falls_back_to_the_first_configured_method_and_says_so():
    rows = [_row("gias", psnr=20.0), _row("ig", psnr=12.0)]
    pick = pick_one(rows, "ig,gias")
    assert pick.row.method == "ig" and pick.rule == FALLBACK
    assert pick_one(rows, "gias,ig").row.method == "gias"  # the config decides, never the PSNR
    assert [p.row.client for p in attacker_picks([_row("ig", 1), _row("ig", 0)])] == [0, 1]  # one per update


def test_sweep_headlines_the_attackers_pick_and_labels_the_oracle(tmp_path):
    from fedsim.lab.sweep.page import write_html
    from fedsim.lab.sweep.summary import aggregate, summarize

    cfg = ExperimentConfig().replace(**{"attack.label_methods": "ilrg,gi", "attack.inversion": "gias"})
    runs = []
    for seed in (0, 1):
        run = _run(tmp_path / f"s{seed}")
        runs.append({**summarize(run, cfg), "seed": seed, "run": str(run)})
    row = {"index": 0, "label": "no defense", "family": "none", "setting": {}, "parameters": [],
           **aggregate(runs), "runs": runs}
    assert row["inversion_best"] == "ig" and row["inversion_pick_rule"] == BY_CRITERION
    assert row["psnr"] == pytest.approx(13.0)  # ig's mean over the two updates, not gias' 21
    assert row["psnr_oracle"] == pytest.approx(21.0)  # per update the max PSNR: gias
    assert row["ident_reid_acc"] == pytest.approx(0.25) and row["ident_reid_chance"] == pytest.approx(0.01)
    assert row["ident_reid_acc_oracle"] == pytest.approx(1.0)
    assert row["label_best"] == "gi" and row["label_pick_rule"] == "labels the inversion used"
    assert row["label_oracle"] == "gi" and row["label_lnacc_oracle"] == pytest.approx(0.9)
    out = tmp_path / "sweep"
    out.mkdir()
    page = write_html([row], "t", out, []).read_text()
    assert "oracle best PSNR (dB, upper bound)" in page and "not that of a method fixed in advance" in page
    assert "13.0" in page and "21.0" in page and "0.250" in page
    assert "attacker&#x27;s pick" in page or "attacker's pick" in page


def test_run_report_headline_is_the_pick_and_the_oracle_is_an_upper_bound(tmp_path):
    from fedsim.lab.report import write_report

    page = write_report(_run(tmp_path)).read_text()
    assert "images rebuilt · attacker&#x27;s pick" in page
    head = page[page.index("images rebuilt · attacker"):]
    value = head[head.index('class="value">') + len('class="value">'):head.index("</div>", head.index('class="value">'))]
    assert value == "13.0 dB"  # ig's two updates (12, 14), not gias' 21
    assert f"{ORACLE}: 21.0 dB" in page
    assert "re-identified 25% (chance 1%)" in page and "class named 50% (chance 25%)" in page
    assert "recognisable" not in page and "above ~20" not in page


def test_the_fixed_20_db_line_is_gone_and_identifiability_has_its_chance(monkeypatch):
    from fedsim.lab import plots
    from fedsim.lab.plots import charts

    figs = []
    monkeypatch.setattr(charts, "_png", lambda fig: figs.append(fig) or b"png")
    rows = [_row("ig", c, 12.0 + c, criterion=0.1, batch_size=b, ident_reid_acc=0.5, ident_reid_chance=0.02)
            for c, b in enumerate((1, 4))]
    assert plots.leakage_plot([], rows, "batch_size", "batch", "t") == b"png"
    texts = [t.get_text() for ax in figs[0].axes for t in ax.texts]
    assert not any("recognisable" in t for t in texts)
    levels = [ln.get_ydata()[0] for ax in figs[0].axes for ln in ax.lines if ln.get_linestyle() == ":"]
    assert 20 not in levels and levels == pytest.approx([0.02])  # the chance level of re-identification
    assert [ax.get_title(loc="left") for ax in figs[0].axes] == ["Image reconstruction", "Identifiability"]
