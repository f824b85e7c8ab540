"""Top of the page: banners (nothing found, no attacks, lost rounds), the configuration, how to read the page,
and the headline numbers with the attacker's pick (:mod:`fedsim.lab.pick`: chosen without ground truth;
the best by ground truth only as a labelled "oracle best" upper bound)."""

from __future__ import annotations

import json

from fedsim.core.defense import registry as defense_registry
from fedsim.lab.report.common import (cfg, e, embed_image, eps_value, fmt, fmt_eps, integer, mean, methods_in_order,
                                      num, ok, pct, setting, stat)
from fedsim.lab.report.chance import ident_words, identifiability, label_chance, psnr_chance
from fedsim.lab.pick import (BY_CRITERION, ORACLE, acted_label, attacker_picks, most_trusted, oracle_picks,
                                    rule_of)
from fedsim.lab.report.bound import epsilon_meaning
from fedsim.lab.report.data import RunData
from fedsim.lab.report.inversions import full_grid_link
from fedsim.lab.report.verdict import SCALE, Verdict, psnr_verdict, share_verdict, stronger


def banners(data: RunData) -> str:
    out = []
    if data.empty:
        out.append(f'<div class="notice empty"><b>Nothing was found in this folder.</b> No config.toml, '
                   f'metrics.jsonl, rejections.jsonl, captures or images were found in <code>{e(data.run_dir)}'
                   f'</code>. Run <code>fedsim run CONFIG --out DIR</code> first, then <code>fedsim report DIR'
                   f'</code>.</div>')
    elif not (data.labels or data.inversions or data.attack_errors):
        out.append('<div class="notice"><b>No attack results yet.</b> This run has no label or inversion rows in '
                   'metrics.jsonl (attacks off, or still running). Enable <code>[attack]</code> or run '
                   '<code>fedsim attack RUN_DIR</code>.</div>')
    lost = lost_banner(data)
    if lost:
        out.append(lost)
    return "".join(out)


def lost_banner(data: RunData) -> str:
    """A warning when rounds aggregated nothing (the global model did not change in them)."""
    if not data.lost_rounds:
        return ""
    lost = sorted({r for r in (integer(x.round) for x in data.lost_rounds) if r is not None})
    total = integer(cfg(data, "run", "num_rounds"))
    played = [integer(u.round) for u in data.utility if integer(u.round)]
    total = total or (max(played + lost) if played or lost else None)
    of = f" of {total}" if total else ""
    reasons = sorted({str(x.reason)[:200] for x in data.lost_rounds})
    plural = "s" if total or len(lost) != 1 else ""
    return (f'<div class="notice lost"><b>{len(lost)}{of} round{plural} lost</b>: '
            f'round{"s" if len(lost) != 1 else ""} {e(", ".join(map(str, lost)))} aggregated nothing, so the global '
            f'model did not change in {"them" if len(lost) != 1 else "it"}. '
            f'<span class="err">{e("; ".join(reasons))}</span> See <a href="#problems">failures</a>.</div>')


def config_table(data: RunData) -> str:
    c = lambda s, k, d=None: cfg(data, s, k, d)  # noqa: E731
    partition = c("data", "partition")
    if partition == "dirichlet" and c("data", "alpha") is not None:
        partition = f"dirichlet (α = {c('data', 'alpha')})"
    elif partition == "shards" and c("data", "shards_per_client") is not None:
        partition = f"shards ({c('data', 'shards_per_client')} per client)"
    model = c("model", "name")
    if model is not None and c("model", "activation"):
        model = f"{model} / {c('model', 'activation')}"
    attacks = None
    if c("attack", "label_methods") is not None or c("attack", "inversion") is not None:
        attacks = (f"labels: {str(c('attack', 'label_methods', '–')).replace(',', ', ')} · "
                   f"images: {str(c('attack', 'inversion', '–')).replace(',', ', ')}")
        if c("attack", "rounds") not in (None, "all"):
            attacks += f" · rounds {c('attack', 'rounds')}"
        if c("attack", "clients") not in (None, "all"):
            attacks += f" · clients {c('attack', 'clients')}"
        if c("attack", "enabled") is False:
            replayed = any(r.replay for r in data.attacks)
            attacks += " (attacked offline by fedsim attack)" if replayed else " (attack off during the run)"
    items = [
        ("dataset", c("data", "dataset")), ("partition", partition), ("model", model),
        ("algorithm", c("train", "algorithm")), ("learning rate", c("train", "lr")),
        ("local epochs", c("train", "local_epochs")), ("batch size", c("train", "batch_size")),
        ("rounds", c("run", "num_rounds")), ("clients", c("run", "num_clients")), ("seed", c("run", "seed")),
        ("attacks", attacks),
    ]
    defense = active_defense(data)
    if defense is not None:
        items.append(("defense", defense))
    cells = [f'<div{" class=wide" if k in ("attacks", "defense") else ""}><span class="k">{e(k)}</span>'
             f'<span class="v">{e(v)}</span></div>' for k, v in items if v is not None and v != ""]
    return f'<div class="cfg">{"".join(cells)}</div>' if cells else ""


def active_defense(data: RunData) -> str | None:
    """The defenses in force with their settings as written ("none" when all are off): each ``[defense.*]`` table
    is asked to its defense object (``fedsim.core.defense.registry.configured``); the old flat ``[defense]`` of run
    folders written before the tables is listed as it is."""
    defense = data.config.get("defense")
    if not isinstance(defense, dict) or not defense:
        return None
    if not any(isinstance(v, dict) for v in defense.values()):
        return _active_flat_defense(defense)
    return "; ".join(defense_registry.configured(defense)) or "none"


_FLAT_SWITCHES = ("local_dp", "central_dp", "dp_sgd", "secagg")


def _active_flat_defense(defense: dict) -> str:
    """The old flat ``[defense]``: a switch (``dp_sgd = true``, ``central_dp = "server"``) with its
    ``switch_*`` settings, and any other key with a non-zero number."""
    on = []
    for k, v in defense.items():
        switch = next((s for s in _FLAT_SWITCHES if k.startswith(s + "_")), None)
        if switch is not None:
            if defense.get(switch) not in (None, False, "off"):
                on.append(f"{k} = {v}")
        elif k in _FLAT_SWITCHES:
            if v not in (False, "off"):
                on.append(f"{k} = {v}")
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and v:
            on.append(f"{k} = {v}")
    return ", ".join(on) or "none"


def full_config(data: RunData) -> str:
    if not data.config:
        return ""
    lines = []
    for sec, vals in data.config.items():
        if isinstance(vals, dict):
            lines.append(f"[{sec}]")
            lines += [f"{k} = {json.dumps(v, default=str)}" for k, v in vals.items()]
            lines.append("")
        else:
            lines.append(f"{sec} = {json.dumps(vals, default=str)}")
    return f'<details><summary>full resolved config</summary><pre>{e(chr(10).join(lines))}</pre></details>'


HOWTO = """
<div class="howto">
 <div><b>“We only share gradients.”</b>In federated learning the images never leave the client; only model
 updates do. This page shows what a server that merely <i>looks at</i> those updates can get back.</div>
 <div><b>Label restoration</b>From one update the server guesses which classes were in the client's batch and
 how many of each. <i>Labels recovered</i> = share of the batch's labels guessed right (100% = every label).</div>
 <div><b>Image reconstruction</b>The server searches for images whose gradient matches the captured one.
 <i>PSNR</i> (dB, higher = closer) and <i>SSIM</i> (0 = unrelated, 1 = identical) measure pixels; whether a
 reconstruction gives a person away is <i>identifiability</i>, each with its chance level: <i>re-identified</i> =
 share of reconstructions whose nearest image among the client's own data is their source (chance: 1 / the
 images searched), <i>class named</i> = share a classifier trained on public data only names correctly (chance:
 the batch's most frequent class). The headline is the <i>attacker's pick</i>, chosen by the attack's own
 criterion without the client's images; the best by ground truth appears only as an <i>oracle best</i> upper
 bound.</div>
 <div><b>FedSGD vs FedAvg</b>FedSGD sends one gradient of one batch: the hardest case to protect. FedAvg sends
 weights after several local steps, which blurs the signal, but often not enough.</div>
</div>"""


def _utility_stat(data: RunData) -> str:
    util = sorted((r for r in data.utility if integer(r.round) is not None and num(r.test_accuracy) is not None),
                  key=lambda r: integer(r.round))
    if not util:
        return ""
    first, final = util[0], util[-1]
    sub = f"after round {integer(final.round)}"
    gain = 0.0
    if first is not final:
        sub += f" (round {integer(first.round)}: {pct(first.test_accuracy)})"
        gain = num(final.test_accuracy) - num(first.test_accuracy)
        if gain <= 0.01:
            sub += " · not learning?"
    return stat("model test accuracy", pct(final.test_accuracy), sub, "good" if gain > 0.05 else "")


def _attack_stats(data: RunData) -> list[str]:
    """One card per label method, the one the server acts on first (:func:`fedsim.lab.pick.acted_label`),
    then the inversion cards."""
    stats = []
    methods = methods_in_order(data.labels, cfg(data, "attack", "label_methods"))
    acted, why = acted_label([r for r in data.inversions if ok(r)], methods)
    for m in sorted(methods, key=lambda m: m != acted):
        rows = [r for r in data.labels if str(r.method) == m]
        good = [r for r in rows if ok(r)]
        inst = mean(r.label_instacc for r in good)
        sub = (f"{len(good)} of {len(rows)} attacks ran · counts exact {pct(mean(r.label_lnacc for r in good))}"
               f" · class presence {pct(mean(r.label_leacc for r in good))}")
        chance = label_chance(good)
        verdict = share_verdict(inst, chance["label_instacc"] if chance else None)
        if chance:
            sub += (f" · random guess: {pct(chance['label_instacc'])} (counts {pct(chance['label_lnacc'])}, "
                    f"presence {pct(chance['label_leacc'])})")
        if m == acted and len(methods) > 1:
            sub += f" · the method the server acts on ({why})"
        stats.append(stat(f"labels recovered · {m}", pct(inst), sub, verdict.cls, verdict.words))
    stats += _inversion_stats(data)
    return stats


def _inversion_stats(data: RunData) -> list[str]:
    """The attacker's pick over every attacked update (its PSNR, identifiability with chance, the oracle upper
    bound in words), then each method's own mean when several ran."""
    methods = methods_in_order(data.inversions, cfg(data, "attack", "inversion"))
    if not methods:
        return []
    picks = attacker_picks(data.inversions, methods)
    chosen = [p.row for p in picks]
    ran = sum(1 for r in data.inversions if ok(r))
    stats = []
    psnr = mean(r.psnr for r in chosen)
    sub = (f"mean PSNR · {ident_words(chosen)} · SSIM {fmt(mean(r.ssim for r in chosen), '.2f')} · "
           f"{ran} of {len(data.inversions)} ran")
    sub += _blind(chosen)
    if picks:
        sub += f" · picked by {rule_of(picks)}"
    oracle = mean(r.psnr for r in oracle_picks(data.inversions))
    if len(methods) > 1 and oracle is not None:
        sub += f" · {ORACLE}: {oracle:.1f} dB"
    verdict = image_verdict(chosen)
    stats.append(stat("images rebuilt · attacker's pick", "–" if psnr is None else f"{psnr:.1f} dB", sub,
                      verdict.cls, verdict.words))
    for m in methods if len(methods) > 1 else []:
        good = [r for r in data.inversions if str(r.method) == m and ok(r)]
        rows = [r for r in data.inversions if str(r.method) == m]
        value = mean(r.psnr for r in good)
        verdict = image_verdict(good)
        stats.append(stat(f"images rebuilt · {m}", "–" if value is None else f"{value:.1f} dB",
                          f"mean PSNR · {ident_words(good)} · {len(good)} of {len(rows)} ran{_blind(good)}",
                          verdict.cls, verdict.words))
    return stats


def _blind(rows) -> str:
    blind = psnr_chance(rows)
    return (f" · blind guess (dataset-mean image) {blind:.1f} dB" if blind is not None
            else " · blind-guess PSNR not recorded (rows written before psnr_chance)")


def image_verdict(rows) -> Verdict:
    """The reconstructions' distance from chance: the farther of their PSNR over the blind guess's and their
    re-identification against its chance level (:func:`fedsim.lab.report.verdict.stronger`)."""
    ident = identifiability(rows)
    reid = share_verdict(ident["ident_reid_acc"], ident["ident_reid_chance"])
    if reid.times is not None:
        reid = Verdict(reid.times, reid.cls, f"re-identified {reid.words}")
    return stronger(psnr_verdict(mean(r.psnr for r in rows), psnr_chance(rows)), reid)


def _privacy_stat(data: RunData) -> str:
    eps = [x for x in (eps_value(p.epsilon) for p in data.privacy) if x is not None]
    if not eps:
        return ""
    last = max(data.privacy, key=lambda p: (integer(p.round) or 0))
    return stat("privacy spent (ε)", fmt_eps(max(eps), ".2f"),
                f"{epsilon_meaning(data, max(eps), last.delta)} · δ = {fmt(last.delta, '.0e')} · {last.accountant} "
                f"· see privacy", "")


def headline(data: RunData) -> str:
    stats = [s for s in [_utility_stat(data), *_attack_stats(data), _privacy_stat(data)] if s]
    if data.num_captures:
        stats.append(stat("updates captured", str(data.num_captures),
                          f"over {data.capture_rounds} round{'s' if data.capture_rounds != 1 else ''}"))
    if data.attacks or data.attack_errors or data.rejections or data.lost_rounds:
        failed = len(data.failed) + len(data.attack_errors)
        capped = len(data.capped)
        stats.append(stat("failed attacks · rejected · capped replies · lost rounds",
                          f"{failed} · {len(data.rejections) - capped} · {capped} · {len(data.lost_rounds)}",
                          "rejected: refused, not aggregated; capped: aggregated with its weight lowered to "
                          "validation.max_weight_share · see the last section",
                          "alarm" if data.lost_rounds else ""))
    out = f'<div class="stats">{"".join(stats)}</div>{SCALE}' if stats else ""
    best = picked_reconstruction(data)
    if best:
        out += f"<h3>The attacker's pick</h3>{best}"
    return out


def picked_reconstruction(data: RunData) -> str:
    """The reconstruction the attacker trusts most, by its own criterion over every update's pick (no ground
    truth; without criteria, the first attacked update's pick), with its scores."""
    methods = methods_in_order(data.inversions, cfg(data, "attack", "inversion"))
    p = most_trusted([p for p in attacker_picks(data.inversions, methods) if embed_image(data.run_dir, p.row.image)])
    if p is None:
        return ""
    r, uri = p.row, embed_image(data.run_dir, p.row.image)
    verdict = image_verdict([r])
    words = f'<div class="verdict {verdict.cls}">{e(verdict.words)}</div>' if verdict.words else ""
    why = (f"the lowest {e(r.criterion_name or 'criterion')} ({fmt(r.criterion, '.3g')}) of every update's pick"
           if p.rule == BY_CRITERION else "the first attacked update (no criterion recorded, first configured method)")
    return (f'<div class="card best"><img alt="the attacker\'s pick" src="{uri}"><div>'
            f'<div class="stat {verdict.cls}" style="border:0;padding:0">'
            f'<div class="label">PSNR · SSIM</div>'
            f'<div class="value">{fmt(r.psnr, ".1f")} dB · {fmt(r.ssim, ".2f")}</div>'
            f'{words}</div>'
            f'<p>{e(ident_words([r]))}</p>{full_grid_link(data, r)}'
            f'<p>Round {e(r.round)}, client {e(r.client)}, method <b>{e(r.method)}</b>, picked by {why}: '
            f'<b>top row</b> the client\'s real images, <b>bottom row</b> what the server rebuilt from the captured '
            f'update alone.</p><p class="muted">{e(setting(r))}</p></div></div>')
