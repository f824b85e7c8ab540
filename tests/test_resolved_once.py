"""Issue 34, "resolve once, carry a typed run": the full check of a config (``fedsim.core.config.check_config``:
module:attr imports, Opacus, faults, the device) runs once per process, and the attack plan is built once, where
the run is loaded; the ServerApp, every ClientApp message and every attack rehydrate the run without either.

One smoke federation in-process: the lab's load (``resolve_config`` -> ``preflight`` -> ``prepare_run_dir``), then
the production ServerApp over a loopback grid whose messages go to the production ClientApp, attacks inline.
Each check and each plan built is charged to the role (process) that ran it. Before this change the same
federation (3 clients, 2 rounds, one attacked update per client and round) counted lab 2 (load, ``replace``),
server 1, clients 6 (one per TRAIN message), attacks 6 (one per attack) checks and 3 plans before round 1.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from flwr.app import Context, RecordDict
from flwr.app.message_type import MessageType

import fedsim.clients.app as client_app
from fedsim.core import messages as K

ROLE = ["lab"]


@pytest.fixture(autouse=True)
def _serverapp_identity(monkeypatch):
    from flwr.supercore.task_identity import TaskIdentity

    for name, value in (("_run_id", 7), ("_node_id", 0), ("_task_id", 1)):
        monkeypatch.setattr(TaskIdentity, name, value)


class Loopback:
    """Each message goes to the production ClientApp of its node (role "client" while it runs)."""

    def __init__(self, run_config: dict, nodes: int) -> None:
        self.run = SimpleNamespace(run_id=7)
        self.contexts = {10 + pid: Context(run_id=7, node_id=10 + pid, state=RecordDict(), run_config=run_config,
                                           node_config={K.PARTITION_ID: pid, K.NUM_PARTITIONS: nodes})
                         for pid in range(nodes)}
        self.train_messages = 0

    def get_node_ids(self):
        return list(self.contexts)

    def send_and_receive(self, messages, *, timeout=None):
        out = []
        for m in messages:
            self.train_messages += m.metadata.message_type == MessageType.TRAIN
            ROLE[0] = "client"
            try:
                out.append(client_app.app(m, self.contexts[m.metadata.dst_node_id]))
            finally:
                ROLE[0] = "server"
        return out


def _counted(monkeypatch):
    """Checks and plans built, per role."""
    import fedsim.core.config as config
    import fedsim.evaluation.attacking as attacking
    import fedsim.evaluation.preconditions as preconditions
    import fedsim.server.scheduler as scheduler

    checks: dict[str, int] = {}
    plans: dict[str, int] = {}
    check, plan = config._check_cross_section, attacking.plan_from_config

    def counted_check(cfg):
        checks[ROLE[0]] = checks.get(ROLE[0], 0) + 1
        return check(cfg)

    def counted_plan(cfg):
        plans[ROLE[0]] = plans.get(ROLE[0], 0) + 1
        return plan(cfg)

    monkeypatch.setattr(config, "_check_cross_section", counted_check)
    for module in (attacking, preconditions, scheduler):
        if hasattr(module, "plan_from_config"):
            monkeypatch.setattr(module, "plan_from_config", counted_plan)
    score = scheduler.attack_and_score

    def attack_role(*args, **kw):
        ROLE[0] = "attack"
        try:
            return score(*args, **kw)
        finally:
            ROLE[0] = "server"

    monkeypatch.setattr(scheduler, "attack_and_score", attack_role)
    return checks, plans


def _counted_lookups(monkeypatch) -> dict[str, int]:
    """Method names looked up in a registry during the attacks (role "attack")."""
    from fedsim.attacks.records import Registry

    lookups: dict[str, int] = {}

    def counted(self, name):
        if ROLE[0] == "attack":
            lookups[name] = lookups.get(name, 0) + 1
        return dict.__getitem__(self, name)

    monkeypatch.setattr(Registry, "__getitem__", counted)
    return lookups


def test_a_federation_checks_its_config_once_per_process_and_plans_its_attacks_once(tmp_path, monkeypatch):
    import fedsim.clients.message_config as mc
    from fedsim.api import resolve_config
    from fedsim.core.config import flatten, read_toml
    from fedsim.core.rows import LabelRow
    from fedsim.core.runfolder import RunFolder
    from fedsim.lab.preflight import preflight
    from fedsim.lab.runner import prepare_run_dir
    from fedsim.server.app import main

    checks, plans = _counted(monkeypatch)
    lookups = _counted_lookups(monkeypatch)
    mc._SLOT.clear()
    ROLE[0] = "lab"
    out = tmp_path / "run"
    cfg = resolve_config({"run": {"num_clients": 3, "num_rounds": 2, "name": "once"},
                          "data": {"partition": "iid"}, "model": {"width": 4},
                          "train": {"algorithm": "fedsgd", "batch_size": 8, "min_train_nodes": 3, "lr": 0.1},
                          "attack": {"enabled": True, "label_methods": "ilrg", "inversion": "none", "workers": 0}})
    plan = preflight(cfg, out)
    cfg, out = prepare_run_dir(cfg, out, plan)
    assert checks == {"lab": 1} and plans == {"lab": 1}
    saved = json.loads(RunFolder(out).resolved.read_text())
    assert saved["attack_plan"]["label_methods"] == ["ilrg"] and saved["defenses"] == []

    # Flower's run config: the submitted config.toml, flattened
    run_config = flatten(read_toml(RunFolder(out).config))
    ROLE[0] = "server"
    grid = Loopback(run_config, 3)
    main(grid, Context(run_id=7, node_id=0, node_config={}, state=RecordDict(), run_config=run_config))
    rows = RunFolder(out).rows(LabelRow)
    assert grid.train_messages == 6 and len(rows) == 6 and all(r.ok for r in rows)
    # one full check and one plan in the whole federation: the lab's (before: 15 checks and 3 plans)
    assert checks == {"lab": 1} and plans == {"lab": 1}
    assert lookups == {"ilrg": 6}  # one lookup of the method per attack (before: 2, and 2 scans of each registry)


def test_a_changed_config_or_a_bare_flwr_run_is_checked_once_by_the_server(tmp_path, monkeypatch):
    """No resolution in the folder (a bare ``flwr run .``), or one of another config: the ServerApp checks and
    plans once and saves the resolution; a bad value is refused there, before round 1."""
    from fedsim.core.config import ConfigError, ExperimentConfig
    from fedsim.core.resolved import ResolvedRun, fingerprint, rehydrate
    from fedsim.core.runfolder import RunFolder
    from fedsim.evaluation.resolution import for_server

    checks, plans = _counted(monkeypatch)
    ROLE[0] = "server"
    cfg = ExperimentConfig().replace(**{"run.out_dir": str(tmp_path), "attack.label_methods": "ilrg"})
    checks.clear()
    resolved = for_server(cfg.to_flat())
    assert checks == {"server": 1} and plans == {"server": 1}
    assert isinstance(resolved, ResolvedRun) and resolved.fingerprint == fingerprint(cfg)
    resolved.save(RunFolder(tmp_path).resolved)
    assert for_server(cfg.to_flat()).attack_plan == resolved.attack_plan and checks == {"server": 1}
    changed = cfg.replace(**{"train.lr": 0.5})
    checks.clear()
    assert for_server(changed.to_flat()).fingerprint == fingerprint(changed) and checks == {"server": 1}
    # a fingerprint vouches only for its own config: a bad value under another config's print is still refused
    bad = {**cfg.to_flat(), "train.min_train_nodes": 99}
    with pytest.raises(ConfigError, match="train.min_train_nodes"):
        rehydrate(bad, fingerprint(cfg))
