"""Storage that scales: capture what will be attacked by default, the global model once per round, the audit
store only for captured updates, and the disk estimate of the new layout (issue 23)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from fedsim.core.capture_plan import audited, capture_selection, captured
from fedsim.core.captures import CaptureStore, load_update, save_update
from fedsim.core.config import from_flat
from fedsim.core.defense.secagg import AGGREGATE_CLIENT
from fedsim.core.errors import CaptureError, ConfigError
from fedsim.core.runfolder import RunFolder
from fedsim.core.types import ClientUpdate
from fedsim.server.sinks import CaptureWriter

FED = {"run.num_clients": 5, "run.num_rounds": 4}


def _update(rnd: int, client: int, before: dict, seed: int = 0) -> ClientUpdate:
    g = torch.Generator().manual_seed(seed * 100 + client)
    after = {n: t + 0.01 * torch.randn(t.shape, generator=g) for n, t in before.items()}
    return ClientUpdate(run_id="t", server_round=rnd, client_id=client, algorithm="fedavg", weights_before=before,
                        weights_after=after, lr=0.1, local_epochs=1, local_steps=2, batch_size=4, num_examples=8,
                        buffers_before={"bn.running_mean": torch.zeros(3)},
                        buffers_after={"bn.running_mean": torch.full((3,), float(client))},
                        defenses={"defense.update.topk_ratio": 0.0})


def _global(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"fc.weight": torch.randn(4, 6, generator=g), "fc.bias": torch.randn(4, generator=g)}


def _keys(path: Path) -> set[str]:
    with safe_open(str(path), framework="pt") as fh:
        return set(fh.keys())


def _equal(a: ClientUpdate, b: ClientUpdate) -> None:
    for group in ("weights_before", "weights_after", "buffers_before", "buffers_after"):
        x, y = getattr(a, group), getattr(b, group)
        assert list(x) == list(y), group
        assert all(torch.equal(x[k], y[k]) for k in x), group
    for name in ("server_round", "client_id", "algorithm", "lr", "local_steps", "num_examples", "defenses",
                 "cohort"):
        assert getattr(a, name) == getattr(b, name), name


# ---- capture what will be attacked -------------------------------------------------------------------------
def test_by_default_only_the_attacked_rounds_and_clients_are_captured():
    cfg = from_flat({**FED, "attack.enabled": True, "attack.rounds": "1,3", "attack.clients": "0,1"})
    assert (cfg.capture.rounds, cfg.capture.clients) == ("attacked", "attacked")
    assert capture_selection(cfg) == (frozenset({1, 3}), frozenset({0, 1}))
    kept = {(r, c) for r in range(1, 5) for c in range(5) if captured(cfg, r, c)}
    assert kept == {(1, 0), (1, 1), (3, 0), (3, 1)}
    every = cfg.replace(**{"capture.rounds": "all", "capture.clients": "all"})
    assert sum(captured(every, r, c) for r in range(1, 5) for c in range(5)) == 20


def test_attacks_off_still_capture_the_attack_selection_for_a_later_replay():
    cfg = from_flat({**FED, "attack.enabled": False, "attack.rounds": "2"})
    assert {(r, c) for r in range(1, 5) for c in range(5) if captured(cfg, r, c)} == {(2, c) for c in range(5)}
    off = cfg.replace(**{"capture.enabled": False})
    assert not any(captured(off, r, c) for r in range(1, 5) for c in range(5))


def test_an_attacked_round_outside_an_explicit_capture_selection_is_still_captured():
    cfg = from_flat({**FED, "attack.enabled": True, "attack.rounds": "4", "capture.rounds": "1"})
    assert captured(cfg, 1, 2) and captured(cfg, 4, 2) and not captured(cfg, 2, 2)


def test_the_audit_store_follows_the_captures_and_secagg_audits_the_cohort():
    cfg = from_flat({**FED, "attack.enabled": True, "attack.rounds": "1", "attack.clients": "2"})
    assert audited(cfg, 1, 2) and not audited(cfg, 1, 3) and not audited(cfg, 2, 2)
    agg = from_flat({**FED, "attack.enabled": True, "attack.rounds": "1", "attack.clients": str(AGGREGATE_CLIENT),
                     "defense.secagg.enabled": True})
    assert all(audited(agg, 1, c, secagg=True) for c in range(5))  # the aggregate's cohort is scored
    assert not audited(agg, 2, 0, secagg=True)


@pytest.mark.parametrize("flat,key", [({"attack.rounds": "9"}, "attack.rounds"),
                                      ({"capture.rounds": "9"}, "capture.rounds"),
                                      ({"capture.clients": "x"}, "capture.clients")])
def test_a_bad_selection_names_its_own_key(flat, key):
    with pytest.raises(ConfigError, match=rf"^{key}: "):
        from_flat({**FED, **flat})


def test_the_writer_captures_what_the_attack_selects(tmp_path):
    """The ServerApp builds the writer from the resolved selection; only attacked (round, client) get files."""
    from fedsim.core.capture_plan import capture_text

    cfg = from_flat({**FED, "attack.rounds": "2", "attack.clients": "1,3"})
    writer = CaptureWriter(tmp_path, capture_text(cfg, "rounds"), capture_text(cfg, "clients"))
    for r in (1, 2, 3):
        before = _global(r)
        for c in range(5):
            writer(_update(r, c, before))
    assert [(c.round, c.client) for c in RunFolder(tmp_path).capture_list()] == [(2, 1), (2, 3)]
    assert [p.parent.name for p in (tmp_path / "captures").rglob("global.safetensors")] == ["round_0002"]


# ---- the global model once per round -----------------------------------------------------------------------
def test_the_global_model_is_stored_once_per_round_and_the_update_reassembles(tmp_path):
    store = CaptureStore(tmp_path)
    folder = RunFolder(tmp_path)
    updates = [_update(r, c, _global(r)) for r in (1, 2) for c in range(3)]
    for u in updates:
        store.save(u)
    for r in (1, 2):
        assert _keys(folder.capture_global(r)) == {"before/fc.weight", "before/fc.bias",
                                                   "buffer_before/bn.running_mean"}
    for u in updates:
        path = folder.capture(u.server_round, u.client_id)
        assert _keys(path) == {"after/fc.weight", "after/fc.bias", "buffer/bn.running_mean"}
        _equal(load_update(path), u)
    assert len(folder.capture_list()) == 6  # the global files are not captures


def test_a_second_store_reuses_the_global_file_another_store_wrote(tmp_path):
    """The capture sink and the attack scheduler each hold a store: one global file per round between them."""
    before = _global(1)
    CaptureStore(tmp_path).save(_update(1, 0, before))
    CaptureStore(tmp_path).save(_update(1, 1, before))
    path = RunFolder(tmp_path).capture(1, 1)
    assert not any(k.startswith("before/") for k in _keys(path))
    _equal(load_update(path), _update(1, 1, before))


def test_an_update_sent_another_model_keeps_its_own_weights_before(tmp_path):
    store = CaptureStore(tmp_path)
    store.save(_update(1, 0, _global(1)))
    odd = _update(1, 1, _global(7))
    path = store.save(odd)
    assert "before/fc.weight" in _keys(path)
    _equal(load_update(path), odd)


def test_a_capture_of_the_old_layout_with_weights_before_inside_still_loads(tmp_path):
    u = _update(3, 2, _global(3))
    path = save_update(u, RunFolder(tmp_path).capture(3, 2))  # self-contained: the layout before issue 23
    assert {"before/fc.weight", "buffer_before/bn.running_mean"} <= _keys(path)
    assert not RunFolder(tmp_path).capture_global(3).exists()
    _equal(load_update(path), u)


def test_a_missing_global_file_is_a_capture_error_naming_it(tmp_path):
    store = CaptureStore(tmp_path)
    path = store.save(_update(1, 0, _global(1)))
    RunFolder(tmp_path).capture_global(1).unlink()
    with pytest.raises(CaptureError, match="global.safetensors does not exist"):
        load_update(path)


def test_a_replay_of_an_uncaptured_round_says_only_captured_updates_replay(tmp_path):
    from fedsim.lab.replay import selected_captures
    from tests.runfolder import make_run

    cfg, run = make_run(tmp_path / "run")
    with pytest.raises(ConfigError, match="only captured updates can be replayed.*capture.rounds=all"):
        selected_captures(RunFolder(run), cfg.replace(**{"attack.clients": "0", "run.num_rounds": 3,
                                                         "attack.rounds": "3"}))


# ---- the disk estimate -------------------------------------------------------------------------------------
def test_the_estimate_counts_the_new_layout():
    from fedsim.lab.check import DiskEstimate

    d = DiskEstimate(captures=8, model_bytes=1000, global_files=4, header_bytes=10, audit_files=8, audit_bytes=500,
                     global_header_bytes=5)
    assert d.capture_bytes == 8 * 1010 + 4 * 1005 and d.total_bytes == d.capture_bytes + 500
    assert d.inline_bytes == 8 * 2010  # the old layout: weights before in every client file
    assert "captures 12.1 kB (8 updates + 4 global models of 1.0 kB), audit 0.5 kB (8 updates)" in d.line()


@pytest.mark.parametrize("algorithm,n,b,epochs,steps,expected", [
    ("fedsgd", 64, 16, 1, 0, 16), ("fedsgd", 10, 16, 1, 0, 10), ("fedavg", 64, 16, 1, 0, 64),
    ("fedavg", 70, 16, 2, 0, 140), ("fedavg", 70, 16, 1, 2, 32), ("fedavg", 70, 16, 1, 5, 70)])
def test_samples_per_update_match_the_local_steps(algorithm, n, b, epochs, steps, expected):
    from fedsim.lab.check import samples_per_update
    from fedsim.core.training import step_batches

    cfg = from_flat({"train.algorithm": algorithm, "train.batch_size": b, "train.local_epochs": epochs,
                     "train.max_local_steps": steps})
    assert samples_per_update(cfg, n) == expected
    assert sum(len(i) for i in step_batches(n, algorithm, b, epochs, 0, steps)) == expected


@pytest.mark.slow
def test_a_real_run_captures_and_audits_only_the_attacked_update_as_estimated(tmp_path):
    """smoke, 3 rounds, attack selection round 2 x client 1 (attacks off: captured for a later replay): one
    client file, one global file, one audit file; the bytes on disk within 1 % of the line printed at start."""
    import subprocess
    import sys

    from fedsim.core.config import load_config
    from fedsim.lab.check import estimate
    from tests.processes import ROOT

    out = tmp_path / "run"
    sets = ["run.num_rounds=3", "attack.enabled=false", "attack.rounds=2", "attack.clients=1"]
    cmd = [sys.executable, "-m", "fedsim.lab.cli", "run", str(ROOT / "configs" / "smoke.toml"), "--out", str(out)]
    proc = subprocess.run(cmd + [a for s in sets for a in ("--set", s)], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    folder = RunFolder(out)
    assert [(c.round, c.client) for c in folder.capture_list()] == [(2, 1)]
    assert sorted(p.relative_to(out).as_posix() for p in (out / "captures").rglob("*.safetensors")) == [
        "captures/round_0002/client_0001.safetensors", "captures/round_0002/global.safetensors"]
    assert sorted(p.relative_to(out).as_posix() for p in (out / "audit").rglob("*.safetensors")) == [
        "audit/round_0002/client_0001.safetensors"]
    disk = estimate(load_config(out / "config.toml"))
    assert disk.line() in proc.stdout
    on_disk = {d: sum(p.stat().st_size for p in (out / d).rglob("*.safetensors")) for d in ("captures", "audit")}
    assert on_disk["captures"] == pytest.approx(disk.capture_bytes, rel=0.01)
    assert on_disk["audit"] == pytest.approx(disk.audit_bytes, rel=0.01)
    update = load_update(folder.capture(2, 1))
    assert update.server_round == 2 and update.client_id == 1 and update.weights_before
