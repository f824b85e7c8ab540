"""Attack and score one capture file: used by the live server's worker pool and by ``fedsim attack``.

Attack (``fedsim.attacks.pipeline``, no ground truth) then score (``fedsim.evaluation.scoring`` against
``fedsim.evaluation.truth``) and write the image grid. Returns typed rows (``fedsim.core.rows``); the caller appends
them (one writer per run).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import singledispatch
from pathlib import Path
from typing import Any, Mapping

from fedsim.core.config import ExperimentConfig
from fedsim.core.errors import ConfigError
from fedsim.core.lists import comma_list
from fedsim.evaluation.grids import save_comparison
from fedsim.evaluation.scoring import padded, score
from fedsim.evaluation.truth import truth_for
from fedsim.core.experiment import dataset, device, make_model
from fedsim.core.resolved import rehydrate
from fedsim.core.runfolder import RunFolder
from fedsim.core.rows import AttackErrorRow, InversionRow, LabelRow, Row, SkippedRow
from fedsim.core.types import AttackResult, ClientUpdate, GroundTruth, InversionResult, LabelResult

LABEL_SCORES = ("label_leacc", "label_lnacc", "label_instacc", "label_cossim", "label_hist_tv", "label_hist_tv_even",
                "true_counts", "score_error")
INVERSION_SCORES = ("psnr", "ssim", "ssim_perm_agnostic", "psnr_per_image", "ssim_per_image", "label_matches",
                    "lpips", "lpips_note", "unreconstructed", "score_error", "psnr_chance", "ident_class_acc",
                    "ident_class_chance", "ident_reid_acc", "ident_reid_chance", "exact_fraction")

log = logging.getLogger("fedsim.attacks")


def plan_from_config(cfg: ExperimentConfig):
    """The attack plan of ``[attack]``. Every configured method name is looked up in its registry here, the one
    check of a name (``fedsim.attacks.records.Registry``: an unknown one is a one-line ``ConfigError`` naming
    ``attack.label_methods`` / ``attack.inversion`` and the choices); the callers build the plan once per run
    (``check_attack_inputs`` at load and ServerApp start, replay, sweep) and hand it on."""
    from fedsim.attacks.inversion import INVERSION_METHODS
    from fedsim.attacks.labels import LABEL_METHODS
    from fedsim.attacks.pipeline import AttackPlan
    from fedsim.attacks.plugins import load_plugins

    a = cfg.attack
    load_plugins(a.plugins)  # attack.plugins / fedsim.attacks entry points: their names are valid below
    methods = label_method_names(cfg)
    for m in methods:
        LABEL_METHODS.resolve(m)
    inversion = None if a.inversion.strip().lower() in ("", "none") else a.inversion.strip()
    record = INVERSION_METHODS[inversion] if inversion is not None else None
    options = {}
    if record is not None and a.inversion_tv >= 0 and record.spec is None:
        fixed = sorted(n for n, r in INVERSION_METHODS.items() if r.spec is not None)
        raise ConfigError(f"attack.inversion_tv: {inversion!r} sets no fixed TV weight (self-tuned or closed-form); "
                          f"use -1, or one of {', '.join(fixed)}")
    if record is not None and a.inversion_tv >= 0:  # a fixed TV weight overrides the method's own (-1: keep it)
        spec = record.spec
        options["regularizers"] = {**(dict(spec.regularizers) if spec else {}), "tv": a.inversion_tv}
    return AttackPlan(label_methods=methods, inversion=inversion, inversion_steps=a.inversion_steps,
                      max_inversion_images=a.max_inversion_images, seed=cfg.run.seed, inversion_options=options)


def label_method_names(cfg: ExperimentConfig) -> tuple[str, ...]:
    """The names in ``attack.label_methods`` (a list or comma-separated; ``none`` and blanks left out)."""
    return tuple(m for m in comma_list(cfg.attack.label_methods) if m != "none")


def data_spec(cfg: ExperimentConfig, plan=None):
    """Public facts of the task; with a label or inversion method that needs it (those of ``plan`` when given, else
    the config's), the server's public labelled split (the held-out half of the test split,
    ``fedsim.attacks.generative.aux_split``: never any client's data)."""
    from fedsim.attacks.generative import aux_split
    from fedsim.attacks.pipeline import DataSpec

    ds = dataset(cfg)
    labels = plan.label_methods if plan is not None else label_method_names(cfg)
    inversion = plan.inversion if plan is not None else cfg.attack.inversion
    public = aux_split(ds) if _needs_public_split(labels, inversion) else None
    return DataSpec(tuple(ds.input_shape), ds.num_classes, tuple(ds.mean), tuple(ds.std), public_aux=public)


def data_spec_of(cfg: ExperimentConfig, facts: Mapping[str, Any]):
    """The ``DataSpec`` of a resolution's data facts (``fedsim.evaluation.resolution``: shape, classes,
    normalisation, whether a method needs the public split, which is then loaded here)."""
    from fedsim.attacks.generative import aux_split
    from fedsim.attacks.pipeline import DataSpec

    public = aux_split(dataset(cfg)) if facts["public_split"] else None
    return DataSpec(tuple(facts["input_shape"]), facts["num_classes"], tuple(facts["mean"]), tuple(facts["std"]),
                    public_aux=public)


def needs_public_split(plan) -> bool:
    """Whether a method of ``plan`` needs the server's public labelled split."""
    return _needs_public_split(plan.label_methods, plan.inversion)


def _needs_public_split(labels, inversion) -> bool:
    from fedsim.attacks.inversion import INVERSION_METHODS
    from fedsim.attacks.labels import LABEL_METHODS
    from fedsim.attacks.records import Need

    return bool(set(labels) & LABEL_METHODS.needing(Need.PUBLIC_SPLIT)
                or inversion in INVERSION_METHODS.needing(Need.PUBLIC_SPLIT))


def generative_options(cfg: ExperimentConfig, run_dir: str | Path) -> dict[str, Any]:
    """ggl/gias options from [attack]: the prior file (default <run>/priors/<dataset>_vae.safetensors) and,
    with attack.prior_autotrain, the public aux images to train it from when it is missing or stale (trained with
    other settings than train_prior's current ones: fedsim.attacks.generative.stale_reasons)."""
    from fedsim.attacks.generative import DEFAULT_ARCH, aux_split, default_prior_path

    path = Path(cfg.attack.prior_path) if cfg.attack.prior_path else default_prior_path(run_dir, cfg.data.dataset)
    options: dict[str, Any] = {"prior_path": str(path)}
    if cfg.attack.prior_archs.replace(" ", "") != DEFAULT_ARCH:  # several decoders: the attack picks by criterion
        options["prior_archs"] = cfg.attack.prior_archs
    if cfg.attack.prior_autotrain:  # get_prior keeps a current file and retrains a missing or stale one
        options["aux_images"] = aux_split(dataset(cfg))[0]
    return options


def attack_and_score(capture: str | Path, flat_config: dict[str, Any], run_dir: str | Path,
                     plan=None, vouched: str | None = None, data: Mapping[str, Any] | None = None, *,
                     calibration_cache=None) -> list[Row]:
    """All rows for one captured update. Never raises for an attack failure (rows say ``ok: false``);
    a capture that cannot be read raises ``CaptureError`` naming the file. ``plan``: the run's
    ``AttackPlan`` as its caller built it once (the scheduler, replay); built from the config when omitted.
    ``vouched``: the fingerprint of the checked config (``fedsim.core.resolved``; the config is checked again
    without it); ``data``: the resolution's data facts (``fedsim.evaluation.resolution``)."""
    import torch

    from fedsim.attacks.inversion import INVERSION_METHODS
    from fedsim.attacks.records import Need
    from fedsim.attacks.pipeline import attack_update
    from fedsim.core.captures import load_update
    from fedsim.core.faults_spec import parse_faults

    from fedsim.attacks.plugins import load_plugins

    torch.set_num_threads(1)
    cfg = rehydrate(flat_config, vouched)
    load_plugins(cfg.attack.plugins)  # a spawned worker imports the plugins before the plan's names are used
    run_dir = Path(run_dir)
    update = load_update(capture)
    if parse_faults(cfg.faults).crashes_attack(update.client_id, update.server_round):  # [faults] attack_crash
        raise RuntimeError(f"injected attack crash: round {update.server_round} client {update.client_id}")
    plan = plan if plan is not None else plan_from_config(cfg)
    spec = data_spec_of(cfg, data) if data is not None else data_spec(cfg, plan)
    if plan.inversion is not None and Need.TRAINED_PRIOR in INVERSION_METHODS[plan.inversion].needs:
        import dataclasses

        plan = dataclasses.replace(plan, inversion_options={**plan.inversion_options,
                                                            **generative_options(cfg, run_dir)})
    dev = device(cfg)
    # calibration_cache: the attack runner's (replay, the scheduler inline or its worker process), shared by the
    # updates it attacks: ig-shadow calibrates once per round's model and schedule (fedsim.attacks.inversion.calibration)
    results = attack_update(update, lambda: make_model(cfg).to(dev), plan, spec, calibration_cache=calibration_cache)
    truth = truth_for(run_dir, update)
    lpips = cfg.attack.lpips_weights or None
    ident = _identify(cfg, update, run_dir) if truth is not None and plan.inversion is not None else None
    rows = [score_row(res, update, truth, spec, run_dir, lpips, ident) for res in results]
    rows = [_with_bound(r, cfg, update) for r in rows]
    if cfg.attack.oracle_prior:
        rows.append(_oracle_prior(cfg, update, truth, run_dir))
    return rows


def _with_bound(row: Row, cfg: ExperimentConfig, update: ClientUpdate) -> Row:
    """An inversion row with the DP reconstruction bound at its re-identification chance
    (``fedsim.evaluation.bounds``); the row unchanged without a DP mechanism, or if the bound fails (logged)."""
    if not isinstance(row, InversionRow) or row.ident_reid_chance is None:
        return row
    from fedsim.evaluation.bounds import with_reid_bound

    try:
        return with_reid_bound(row, cfg, update)
    except Exception as exc:  # noqa: BLE001 - the bound is an extra score, not a reason to lose the row
        log.warning("reconstruction bound not computed (round %s, client %s): %s: %s", update.server_round,
                    update.client_id, type(exc).__name__, exc)
        return row


def _oracle_prior(cfg: ExperimentConfig, update: ClientUpdate, truth: GroundTruth | None, run_dir: Path) -> Row:
    """The ORACLE-PRIOR attack's row (``attack.oracle_prior``; ``fedsim.evaluation.prior_aware``), an
    ``attack_error`` row when it fails."""
    from fedsim.evaluation.prior_aware import ORACLE, oracle_prior_row

    try:
        return oracle_prior_row(cfg, update, truth, run_dir)
    except Exception as exc:  # noqa: BLE001 - one failed analysis must not lose the attack's rows
        log.warning("oracle-prior attack failed (round %s, client %s): %s: %s", update.server_round,
                    update.client_id, type(exc).__name__, exc)
        return attack_error_row(update.server_round, update.client_id, exc, method=ORACLE)


def _identify(cfg: ExperimentConfig, update: ClientUpdate, run_dir: Path):
    """The identifiability context of an update (``fedsim.evaluation.identify``), None when it cannot be built
    (logged: the rows then carry no ``ident_*``, never a lost attack)."""
    from fedsim.evaluation.identify import identify_for

    try:
        return identify_for(cfg, update, run_dir)
    except Exception as exc:  # noqa: BLE001 - identifiability is an extra score, not a reason to lose the row
        log.warning("identifiability not scored (round %s, client %s): %s: %s", update.server_round,
                    update.client_id, type(exc).__name__, exc)
        return None


def attack_error_row(server_round: int, client: int, failure: BaseException | str, **fields: Any) -> AttackErrorRow:
    """The ``attack_error`` row of an attack that crashed or timed out before it produced rows of its own
    (``failure``: the exception, or a message such as "timed out after 60s"). The live server
    (``fedsim.server.scheduler``) and ``fedsim attack`` (``fedsim.lab.replay``, with ``replay=True``) both write it."""
    message = failure if isinstance(failure, str) else f"{type(failure).__name__}: {failure}"
    return AttackErrorRow(round=server_round, client=client, error=message, **fields)


def score_row(res: AttackResult, update: ClientUpdate, truth: GroundTruth | None, spec, run_dir: Path,
              lpips_weights: str | None = None, ident=None) -> Row:
    """The typed row of one attack result, scored against ``truth`` when it exists (image grid written;
    identifiability too with ``ident``, a ``fedsim.evaluation.identify.Identify``): a skipped one is a
    ``SkippedRow``, otherwise the row type of the result's type (``result_row``)."""
    if res.not_applicable:
        return SkippedRow(round=update.server_round, client=update.client_id, method=res.method,
                          reason=res.error or "not applicable")
    common: dict[str, Any] = dict(
        round=update.server_round, client=update.client_id, method=res.method, ok=res.ok,
        seconds=round(res.seconds, 4), algorithm=update.algorithm, local_steps=update.local_steps,
        batch_size=update.batch_size, num_examples=update.num_examples,
        defenses=dict(update.defenses))  # what the server knows; never assumed off
    scores: dict[str, Any] = {}
    if res.ok:
        try:
            scores = score(res, truth, spec.num_classes, spec.mean, spec.std, lpips_weights, ident)
        except Exception as exc:  # noqa: BLE001 - a scoring problem must not lose the attack row
            scores = {"score_error": f"{type(exc).__name__}: {exc}"}
    return result_row(res, common, scores, Scored(update, truth, spec, Path(run_dir)))


@dataclass(frozen=True)
class Scored:
    """What a row builder may need beyond the result: the update, its truth, the task, the run folder."""

    update: ClientUpdate
    truth: GroundTruth | None
    spec: Any
    run_dir: Path


@singledispatch
def result_row(res: AttackResult, common: dict[str, Any], scores: dict[str, Any], ctx: Scored) -> Row:
    """The row of one result, by the result's type (a new result type registers its own)."""
    raise TypeError(f"no row type for {type(res).__name__}")


@result_row.register
def _(res: LabelResult, common: dict[str, Any], scores: dict[str, Any], ctx: Scored) -> Row:
    if not res.ok:
        return LabelRow(error=res.error, **common)
    restored = res.restoration
    return LabelRow(num_samples=res.num_samples, restored_counts=restored.counts.tolist(),
                    presence_only=restored.presence_only, **common,
                    **{k: scores[k] for k in LABEL_SCORES if k in scores})


@result_row.register
def _(res: InversionResult, common: dict[str, Any], scores: dict[str, Any], ctx: Scored) -> Row:
    if not res.ok:
        return InversionRow(error=res.error, **common)
    update, truth, spec, run_dir = ctx.update, ctx.truth, ctx.spec, ctx.run_dir
    image = None
    if truth is not None and "permutation" in scores:
        x_true, _ = truth.unique_samples()
        image = RunFolder(run_dir).image(update.server_round, update.client_id, res.method)
        rec, _ = padded(res.reconstruction, None, len(x_true))
        save_comparison(x_true, rec, run_dir / image, mean=spec.mean, std=spec.std,
                        permutation=scores["permutation"], psnr_per_image=scores.get("psnr_per_image"),
                        title=f"round {update.server_round}, client {update.client_id}: {res.method} "
                              f"(labels: {res.label_source})")
    return InversionRow(label_source=res.label_source, num_images=int(len(res.reconstruction)),
                        steps=res.steps, image=str(image) if image else None, signals=list(res.signals),
                        criterion=res.criterion, criterion_name=res.criterion_name, **common,
                        **{k: scores[k] for k in INVERSION_SCORES if k in scores})
