"""Measure the central-DP noise a run really added, from its captures, beside what its privacy rows report.

For each round r that has captures in round r + 1: noise = (global model sent in round r + 1) - (W_r + sum of the
clipped deltas captured in round r / m), m the fixed denominator (FedAvg's cohort, ``fedsim.server.central_dp``);
measured z = std(noise) / (2 C / m), the replace-one sensitivity; epsilon of the measured multipliers by
``dp_accounting`` (sampling m of N without replacement, replace-one). Gives the server's own view (it
holds exactly these tensors), so it needs server-side clipping (the captures hold the clipped replies) and every
update of consecutive rounds captured: run with ``capture.rounds=all capture.clients=all`` (the default captures
only what the attack selects).

    .venv/bin/python -m benchmarks.central_dp_noise runs/cdp      # docs/reliability.md, "Central DP under faults"
"""

from __future__ import annotations

import sys

import torch

from benchmarks import harness as h
from fedsim.core.accounting import central_dp_releases_epsilon
from fedsim.core.captures import iter_captures, load_update
from fedsim.core.config import load_config
from fedsim.core.defense.base import sampled_clients
from fedsim.core.rows import PrivacyRow
from fedsim.core.runfolder import RunFolder


def main(argv: list[str] | None = None) -> int:
    ap = h.parser(__doc__)
    ap.add_argument("run", help="a run folder of a central-DP run with server-side clipping and captures")
    args = h.parse(ap, argv)
    cfg = load_config(f"{args.run}/config.toml")
    if cfg.defense.central_dp.clipping != "server":
        ap.error(f"{args.run}: defense.central_dp.clipping is {cfg.defense.central_dp.clipping!r}, not 'server'")
    clip = cfg.defense.central_dp.clip_norm
    updates = [load_update(p) for p in iter_captures(args.run)]
    if not updates:
        ap.error(f"{args.run}: no captures")
    names = updates[0].parameter_names
    flat = lambda s: torch.cat([s[n].double().flatten() for n in names])  # noqa: E731
    rows = {r.round: r for r in RunFolder(args.run).rows(PrivacyRow) if r.mechanism == "central_dp"}
    m, population = sampled_clients(cfg), cfg.run.num_clients
    measured: list[tuple[float, int, int]] = []
    print(f"sensitivity 2 C / m = {2 * clip / m:.4g} (replace-one, C = {clip:g}, m = {m} of N = {population})")
    print("| round | replies summed / m | z in the row | z measured | epsilon reported | "
          "epsilon of the measured noise |\n|---|---|---|---|---|---|")
    for rnd in sorted({u.server_round for u in updates}):
        mine = [u for u in updates if u.server_round == rnd]
        later = [u for u in updates if u.server_round == rnd + 1]
        if not later or rnd not in rows:
            continue
        w0 = flat(mine[0].weights_before)
        noise = flat(later[0].weights_before) - w0 - sum(flat(u.weights_after) - w0 for u in mine) / m
        measured.append((float(noise.std()) / (2 * clip / m), m, population))
        r = rows[rnd]
        print(f"| {rnd} | {len(mine)} / {r.sampled} | {r.noise_multiplier:.3f} | {measured[-1][0]:.3f} | "
              f"{r.epsilon:.1f} | {central_dp_releases_epsilon(measured, r.delta):.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
