"""The docs' screenshots against the numbers the docs state and the code that draws them (issue 34).

``scripts/screenshot_report.py`` writes ``docs/report.png.json`` and ``docs/sweep.png.json`` beside the PNGs
(``fedsim.lab.screenshots``: the shot folder's headline numbers read through the report's own code, the date, the
command, a digest of the drawing code). No browser and no run here: the tests read the sidecars and the docs.

Checked, and why these:

* **README, "The demo" paragraph** (facts a newcomer reads before running anything, all about the run shot in
  ``docs/report.png``): the number of clients, the number of rounds, the algorithm and batch size, the attacked
  rounds, how many clients are attacked ("two of them"). Every one of these the paragraph states is checked, and
  it must state at least three. Not checked: "about 10 minutes" (a time on idle cores; the screenshot's run may
  have been timed under load, and its time is stated with its load in docs/benchmarks.md).
* **README, any line that shows ``docs/sweep.png``** must name the sweep file the screenshot was made from (so the
  README cannot say ``sweep_dp`` under a picture of another sweep).
* **docs/benchmarks.md#demo-headline** (the measured numbers the README links): the ``text`` block must be the
  run's end-of-run summary line for line (accuracy, attacked updates, every label method's LnAcc and labels
  recovered with chance, every inversion method's PSNR with the blind guess and SSIM); the prose's final test
  accuracy, the attacker's pick (method, PSNR, blind guess, SSIM, re-identified share and its chance), and the
  per-round PSNR and re-identified shares with their rounds. Compared at the digits the doc prints.
* **docs/benchmarks.md, the DP-bound row** (about the sweep shot in ``docs/sweep.png``): ORACLE-PRIOR rates and
  their bounds, and the pipeline's bounds, at the doc's digits.
* **The drawing code**: the sha256 digest of today's files in ``fedsim.lab.screenshots.DRAWING_CODE`` must equal
  the sidecar's (else the screenshot is older than the code that draws it: rerun the script); the PNG's own sha256
  must equal the sidecar's (the sidecar belongs to this image).

``test_checks_catch_edits`` shows the checks fail on a changed doc number and on an edited drawing file.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import pytest

from fedsim.lab.screenshots import DRAWING_CODE, code_digest, drawing_files, read_sidecar

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6}


def _same(doc: str, value) -> bool:
    """``doc`` (a number as the doc prints it) equals ``value`` rounded to the doc's digits."""
    if value is None:
        return False
    digits = len(doc.split(".")[1]) if "." in doc else 0
    return format(float(value), f".{digits}f") == doc


def _numbers(text: str) -> list[str]:
    return re.findall(r"\d+(?:\.\d+)?", text)


def demo_paragraph(readme: str) -> str:
    m = re.search(r"\*\*The demo\*\*(.*?)(?:\n\s*\n)", readme, re.S)
    assert m, "README: no paragraph starting with **The demo**"
    return " ".join(m.group(1).split())


def readme_mismatches(readme: str, side: dict, sweep_side: dict) -> tuple[list[str], int]:
    """(mismatches, facts checked) of the README's demo paragraph and its sweep-screenshot line."""
    n = side["numbers"]
    cfg = n["config"]
    para = demo_paragraph(readme)
    bad, checked = [], 0

    def check(what: str, doc, true) -> None:
        nonlocal checked
        checked += 1
        if doc != true:
            bad.append(f"README demo paragraph: {what} {doc!r}, the screenshot's run {true!r}")

    if m := re.search(r"(\d+) clients", para):
        check("clients", int(m.group(1)), cfg["num_clients"])
    if m := re.search(r"for (\d+) rounds", para):
        check("rounds", int(m.group(1)), cfg["num_rounds"])
    if m := re.search(r"\b(FedSGD|FedAvg)\b", para):
        check("algorithm", m.group(1).lower(), str(cfg["algorithm"]).lower())
    if m := re.search(r"batch (\d+)", para):
        check("batch size", int(m.group(1)), cfg["batch_size"])
    if m := re.search(r"in rounds ((?:\d+(?:, | and )?)+)", para):
        check("attacked rounds", [int(x) for x in _numbers(m.group(1))], n["attacked_rounds"])
    if m := re.search(r"attacks (\w+) of them", para):
        check("attacked clients", WORDS.get(m.group(1), m.group(1)), len(n["attacked_clients"]))
    for line in readme.splitlines():
        if "docs/sweep.png" in line:
            checked += 1
            stem = Path(sweep_side["numbers"]["sweep_file"] or "?").stem
            if not re.search(rf"\b{re.escape(stem)}\b", line):
                bad.append(f"README shows docs/sweep.png without naming its sweep {stem!r}: {line.strip()}")
    return bad, checked


def section(doc: str, title: str) -> str:
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", doc, re.S | re.M)
    assert m, f"docs/benchmarks.md: no section '## {title}'"
    return m.group(1)


def benchmarks_mismatches(bench: str, side: dict, sweep_side: dict) -> list[str]:
    """Mismatches of docs/benchmarks.md's demo headline and DP-bound row with the sidecars."""
    n, bad = side["numbers"], []
    sec = section(bench, "Demo headline")
    block = re.search(r"```text\n(.*?)```", sec, re.S)
    if not block:
        bad.append("demo headline: no ```text block (the run's end-of-run summary)")
    elif block.group(1).rstrip("\n").splitlines() != n["summary"]:
        bad.append("demo headline: the text block is not the screenshot run's summary:\n"
                   + "\n".join(n["summary"]))
    prose = " ".join(re.sub(r"```.*?```", " ", sec, flags=re.S).split())
    pick = n["pick"]
    patterns = {
        r"final test accuracy \*\*([\d.]+)\*\*": [n["test_accuracy"]["final"]],
        r"attacker's pick \(`[\w-]+`\) \*\*([\d.]+) dB\*\* \(blind guess ([\d.]+) dB\), SSIM ([\d.]+), "
        r"re-identified \*\*([\d.]+)\*\* \(chance ([\d.]+)\)":
            [pick["psnr"], pick["psnr_chance"], pick["ssim"], pick["reid"], pick["reid_chance"]],
    }
    for pat, values in patterns.items():
        m = re.search(pat, prose)
        if not m:
            bad.append(f"demo headline: no match for {pat!r}")
            continue
        for doc, value in zip(m.groups(), values):
            if not _same(doc, value):
                bad.append(f"demo headline: {doc} in {m.group(0)!r}, the screenshot's run {value}")
    if (m := re.search(r"attacker's pick \(`([\w-]+)`\)", prose)) and [m.group(1)] != pick["methods"]:
        bad.append(f"demo headline: pick method {m.group(1)}, the screenshot's run {pick['methods']}")
    m = re.search(r"reaches ([\d. /]+) dB mean PSNR in rounds ([\d /]+), and ([\d. /]+) of the reconstructions "
                  r"re-identify", prose)
    if not m:
        bad.append("demo headline: no per-round sentence ('reaches a / b dB mean PSNR in rounds 1 / 10, and ...')")
    else:
        rounds = [int(x) for x in _numbers(m.group(2))]
        if [str(r) for r in rounds] != list(n["pick_by_round"]):
            bad.append(f"demo headline: rounds {rounds}, the screenshot's run {list(n['pick_by_round'])}")
        for k, (psnr, reid) in zip(rounds, zip(_numbers(m.group(1)), _numbers(m.group(3)))):
            per = n["pick_by_round"].get(str(k), {})
            if not (_same(psnr, per.get("psnr")) and _same(reid, per.get("reid"))):
                bad.append(f"demo headline: round {k} {psnr} dB / {reid}, the screenshot's run "
                           f"{per.get('psnr')} / {per.get('reid')}")
    points = [p for p in sweep_side["numbers"]["points"] if (p.get("bound_oracle") or {}).get("bound") is not None]
    row = next((ln for ln in bench.splitlines() if "ORACLE-PRIOR" in ln and "against bounds" in ln), None)
    if row is None:
        bad.append("benchmarks: no DP-bound row ('ORACLE-PRIOR ... against bounds ...')")
    else:
        m = re.search(r"ORACLE-PRIOR ([\d. /]+) % against bounds ([\d. /]+) %", row)
        rates, bounds = _numbers(m.group(1)), _numbers(m.group(2))
        true_r = [100 * p["bound_oracle"]["rate"] for p in points]
        true_b = [100 * p["bound_oracle"]["bound"] for p in points]
        if len(rates) != len(points) or not all(map(_same, rates + bounds, true_r + true_b)):
            bad.append(f"DP-bound row: ORACLE-PRIOR {rates} against {bounds} %, the screenshot's sweep "
                       f"{[round(x, 1) for x in true_r]} against {[round(x, 1) for x in true_b]}")
        if m := re.search(r"pipeline at chance under ([\d. /]+) %", row):
            finite = [100 * p["bound_reid"]["bound"] for p in points if p["bound_reid"]["bound"] < 1]
            if not all(map(_same, _numbers(m.group(1)), finite)) or len(_numbers(m.group(1))) != len(finite):
                bad.append(f"DP-bound row: pipeline bounds {m.group(1)} %, the screenshot's sweep {finite}")
    return bad


def test_readme_demo_facts_match_report_screenshot():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    bad, checked = readme_mismatches(readme, read_sidecar(DOCS / "report.png"), read_sidecar(DOCS / "sweep.png"))
    assert not bad, "\n".join(bad) + "\n(fix the README, or rerun scripts/screenshot_report.py on today's demo)"
    assert checked >= 3, f"README's demo paragraph states only {checked} checkable facts (clients, rounds, ...)"


def test_benchmarks_numbers_match_screenshots():
    bench = (DOCS / "benchmarks.md").read_text(encoding="utf-8")
    bad = benchmarks_mismatches(bench, read_sidecar(DOCS / "report.png"), read_sidecar(DOCS / "sweep.png"))
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("png", ["report.png", "sweep.png"])
def test_screenshot_not_older_than_its_drawing_code(png):
    side = read_sidecar(DOCS / png)
    assert hashlib.sha256((DOCS / png).read_bytes()).hexdigest() == side["png_sha256"], \
        f"docs/{png} is not the image its sidecar describes: rerun {side['command']}"
    now = code_digest(side["kind"])
    changed = sorted(p for p in set(now["files"]) | set(side["drawing_code"]["files"])
                     if now["files"].get(p) != side["drawing_code"]["files"].get(p))
    assert now["digest"] == side["drawing_code"]["digest"], \
        f"docs/{png} is older than the code that draws it ({', '.join(changed)}): rerun {side['command']}"


def test_checks_catch_edits(tmp_path):
    """A changed doc number, a README fact and an edited drawing file each fail their check."""
    side, sweep_side = read_sidecar(DOCS / "report.png"), read_sidecar(DOCS / "sweep.png")
    bench = (DOCS / "benchmarks.md").read_text(encoding="utf-8")
    sec = section(bench, "Demo headline")
    acc = re.search(r"final test accuracy \*\*([\d.]+)\*\*", sec).group(1)
    wrong = f"{float(acc) + 0.001:.{len(acc.split('.')[1])}f}"
    assert benchmarks_mismatches(bench.replace(f"**{acc}**", f"**{wrong}**", 1), side, sweep_side)
    summary = side["numbers"]["summary"][-1]
    assert benchmarks_mismatches(bench.replace(summary, summary.replace(" ran", " ran!"), 1), side, sweep_side)
    rate = re.search(r"ORACLE-PRIOR ([\d.]+)", bench).group(1)
    assert benchmarks_mismatches(bench.replace(f"ORACLE-PRIOR {rate}", "ORACLE-PRIOR 99.9", 1), side, sweep_side)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    para = demo_paragraph(readme)
    clients = re.search(r"(\d+) clients", para).group(1)
    assert readme_mismatches(readme.replace(f"{clients} clients", f"{int(clients) + 1} clients", 1),
                             side, sweep_side)[0]
    assert readme_mismatches(readme + "\n![a DP sweep](docs/sweep.png) from sweep_dp\n", side, sweep_side)[0]
    # an edited drawing file changes the digest (a copy of the drawing code, one byte added to one file)
    for kind in DRAWING_CODE:
        files = drawing_files(kind)
        for p in files:
            (tmp_path / p).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ROOT / p, tmp_path / p)
        before = code_digest(kind, tmp_path)["digest"]
        assert before == code_digest(kind)["digest"]
        with (tmp_path / files[-1]).open("a") as fh:
            fh.write("\n")
        assert code_digest(kind, tmp_path)["digest"] != before
