"""The lines ``fedsim run`` (and ``demo``, ``deploy-local``) prints at the end of a run: utility, how many
updates were attacked, the leakage per method beside its chance level, where the results are. Each line fits in
100 columns; the numbers are the report's headline numbers (``fedsim.lab.report.summary``), read from the typed
rows of the run folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from fedsim.core.rows import AttackErrorRow, InversionRow, LabelRow, PrivacyRow, UtilityRow, finite_float
from fedsim.core.runfolder import RunFolder

WIDTH = 100


def _mean(values: Sequence[object]) -> float | None:
    nums = [f for f in (finite_float(v) for v in values) if f is not None]
    return sum(nums) / len(nums) if nums else None


def _f(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def _methods(rows: Sequence[LabelRow | InversionRow]) -> list[tuple[str, bool]]:
    """(method, replayed) in order of appearance: a method ``fedsim attack`` replayed is its own line."""
    seen: list[tuple[str, bool]] = []
    for r in rows:
        if (key := (r.method, bool(r.replay))) not in seen:
            seen.append(key)
    return seen


def _name(key: tuple[str, bool]) -> str:
    return f"{key[0]} (replayed)" if key[1] else key[0]


def _of(rows: Sequence[LabelRow | InversionRow], key: tuple[str, bool]) -> list:
    return [r for r in rows if (r.method, bool(r.replay)) == key and r.ok]


def utility_line(rows: Sequence[UtilityRow]) -> str | None:
    """``final test accuracy 0.939 (round 80), best 0.954 (round 72)``."""
    util = [r for r in rows if r.round > 0 and finite_float(r.test_accuracy) is not None] or list(rows)
    if not util:
        return None
    final = max(util, key=lambda r: r.round)
    best = max(util, key=lambda r: (r.test_accuracy, -r.round))
    return (f"test accuracy: final {final.test_accuracy:.3f} (round {final.round}), "
            f"best {best.test_accuracy:.3f} (round {best.round})")


def attacked_line(labels: Sequence[LabelRow], inversions: Sequence[InversionRow],
                  errors: Sequence[AttackErrorRow]) -> str:
    updates = {(r.round, r.client) for r in (*labels, *inversions, *errors)}
    if not updates:
        return "attacked updates: none (attack.enabled = false, or nothing selected)"
    rounds = sorted({r for r, _ in updates})
    shown = ", ".join(map(str, rounds[:8])) + (", ..." if len(rounds) > 8 else "")
    failed = f"; {len(errors)} attack(s) failed (report: failures)" if errors else ""
    return f"attacked updates: {len(updates)} (round{'s' if len(rounds) > 1 else ''} {shown}){failed}"


def label_lines(rows: Sequence[LabelRow]) -> list[str]:
    """Per method: mean LnAcc (counts exact) and labels recovered (instance accuracy), each with its chance."""
    from fedsim.lab.report.chance import label_chance

    out = []
    for m in _methods(rows):
        good = _of(rows, m)
        chance = label_chance(good) or {}
        out.append(f"  {_name(m):<12} LnAcc {_f(_mean([r.label_lnacc for r in good]))} "
                   f"(chance {_f(chance.get('label_lnacc'))}), labels recovered "
                   f"{_f(_mean([r.label_instacc for r in good]))} (chance {_f(chance.get('label_instacc'))}), "
                   f"{len(good)} ran")
    return ["label restoration (mean over attacked updates):", *out] if out else []


def inversion_lines(rows: Sequence[InversionRow]) -> list[str]:
    """Per method: mean PSNR beside the blind guess (the dataset-mean image), and SSIM."""
    out = []
    for m in _methods(rows):
        good = _of(rows, m)
        out.append(f"  {_name(m):<12} PSNR {_f(_mean([r.psnr for r in good]), '.1f')} dB "
                   f"(chance {_f(_mean([r.psnr_chance for r in good]), '.1f')} dB), "
                   f"SSIM {_f(_mean([r.ssim for r in good]))}, {len(good)} ran")
    return ["image reconstruction (mean over attacked updates):", *out] if out else []


def replayed_line(rows: Sequence[object]) -> str | None:
    """``replayed (fedsim attack): 6 updates, ig, ilrg; 1 failed``, None when nothing was replayed."""
    mine = [r for r in rows if isinstance(r, (LabelRow, InversionRow, AttackErrorRow)) and getattr(r, "replay", None)]
    if not mine:
        return None
    methods = ", ".join(dict.fromkeys(r.method for r in mine if r.method))
    failed = sum(isinstance(r, AttackErrorRow) or not r.ok for r in mine)
    updates = len({(r.round, r.client) for r in mine})
    return (f"replayed (fedsim attack): {updates} update{'' if updates == 1 else 's'}, {methods or '-'}"
            + (f"; {failed} failed" if failed else ""))


def privacy_line(rows: Sequence[PrivacyRow]) -> str | None:
    """The largest epsilon spent (the report's and the sweep's figure): a round's DP-SGD row holds the largest
    epsilon of the clients that took part in it, so under partial participation the last round's row can be
    below what an earlier client spent (issue 35, defect 4). Several mechanisms: the largest of each."""
    if not rows:
        return None
    last = max(r.round for r in rows)
    parts = []
    for mech in dict.fromkeys(r.mechanism for r in rows):
        mine = [r for r in rows if r.mechanism == mech]
        top = max(mine, key=lambda r: r.epsilon)
        parts.append(f"{(mech + ' ') if len(set(r.mechanism for r in rows)) > 1 else ''}epsilon {top.epsilon:.2f} "
                     f"at delta {top.delta:.0e} ({top.accountant})")
    return f"privacy spent (max): {'; '.join(parts)} after round {last}"


def check_bounds(run: Path) -> None:
    """Raise ``BoundViolation`` (one line; ``fedsim run`` exits 1) when the run's measured re-identification lies
    above its DP bound beyond its 95 % Clopper-Pearson interval: a calibration bug. The run is pooled as the sweep
    pools one seed (``fedsim.lab.sweep.bound``: the attacker's pick per update, the ORACLE-PRIOR rows, each target
    a trial, the trial-weighted mean of the rows' bounds, which holds for the pooled rate whatever mechanisms the
    rows were released under)."""
    from fedsim.core.reconstruction_bound import check_measured
    from fedsim.lab.pick import attacker_picks
    from fedsim.lab.sweep.bound import aggregate_bounds, measured_of, run_tallies

    folder = RunFolder(run)
    inv = list({(r.method, r.round, r.client): r for r in folder.rows(InversionRow) if r.ok}.values())
    point: dict = {}
    aggregate_bounds(point, [run_tallies(Path(run), [p.row for p in attacker_picks(inv, _configured(folder))])])
    check_measured(measured_of(point), where=f"run {run}")


def _configured(folder: RunFolder) -> str | None:
    """``attack.inversion`` of the run's resolved config (the pick's order), None without one."""
    import tomllib

    try:
        value = tomllib.loads(folder.config.read_text()).get("attack", {}).get("inversion")
    except (OSError, tomllib.TOMLDecodeError):
        return None
    return value if isinstance(value, str) else None


def summary_lines(run: Path, report: Path | None) -> list[str]:
    """The end-of-run summary, one string per line (each at most ``WIDTH`` columns but for long paths)."""
    folder = RunFolder(run)
    rows = folder.rows()
    live = [r for r in rows if not getattr(r, "replay", None)]
    labels = [r for r in rows if isinstance(r, LabelRow)]  # live, then replayed methods marked (replayed)
    inversions = [r for r in rows if isinstance(r, InversionRow)]
    errors = [r for r in live if isinstance(r, AttackErrorRow)]
    lines = [utility_line([r for r in rows if isinstance(r, UtilityRow)]),
             attacked_line([r for r in labels if not r.replay], [r for r in inversions if not r.replay], errors),
             replayed_line(rows), *label_lines(labels), *inversion_lines(inversions),
             privacy_line([r for r in rows if isinstance(r, PrivacyRow)]),
             f"results: {run}"]
    if report is not None:
        lines.append(f"report:  {report}")
    return [line for line in lines if line]
