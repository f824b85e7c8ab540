"""Measure central DP noise from captures: prints per round the clients aggregated, the row's z and the measured z."""
import sys, math, torch
from fedsim.captures import iter_captures, load_update
from fedsim.runfolder import RunFolder
from fedsim.rows import PrivacyRow
from fedsim.accounting import composed_gaussian_epsilon
from fedsim.config import load_config
out = sys.argv[1]
cfg = load_config(f"{out}/config.toml")
clip = cfg.defense.central_dp.clip_norm
ups = [load_update(p) for p in iter_captures(out)]
names = ups[0].parameter_names
flat = lambda s: torch.cat([s[n].double().flatten() for n in names])
rows = {r.round: r for r in RunFolder(out).rows(PrivacyRow)}
meas = []
for rnd in sorted({u.server_round for u in ups}):
    mine = [u for u in ups if u.server_round == rnd]; later = [u for u in ups if u.server_round == rnd + 1]
    if not later: continue
    noise = flat(later[0].weights_before) - torch.stack([flat(u.weights_after) for u in mine]).mean(0)
    z = float(noise.std()) / (clip / len(mine)); meas.append(z)
    r = rows[rnd]
    print(f"round {rnd}: clients {len(mine)} of {r.sampled}, row z {r.noise_multiplier:.4f}, measured z {z:.4f}, "
          f"row eps {r.epsilon:.1f}, eps of measured noise so far {composed_gaussian_epsilon(meas, 1e-5):.1f}")
