"""Your own defense and attack (issue 22): ``[defense.custom]`` client mods and strategy wrappers, and
``attack.plugins`` label methods, from a package outside the project; plugins reach every process.

The package is ``tests/byo_package.py``'s (model factory + loader) plus the modules below, written under
``tmp_path`` and put on ``PYTHONPATH`` for the Flower processes and the spawned attack workers.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from fedsim.core.config import ConfigError, from_flat, load_config
from tests.byo_package import PACKAGE, write_package
from tests.test_byo import _readme_blocks, importable_everywhere

ROOT = Path(__file__).resolve().parents[1]

DEFENSES = '''
import json
import os

from flwr.app import ArrayRecord
from fedsim.core.defense.custom import options
from fedsim.server.wrapping import StrategyWrapper


def shrink_mod(msg, ctxt, call_next):
    """A plain Flower client mod: the reply's float tensors become W_before + factor * (W_after - W_before)."""
    factor = float(options(ctxt).get("factor", 0.5))
    sent = {name: rec.to_torch_state_dict() for name, rec in msg.content.array_records.items()}
    out = call_next(msg, ctxt)
    if out.has_error():
        return out
    for name, rec in list(out.content.array_records.items()):
        state, before = rec.to_torch_state_dict(), sent.get(name, {})
        for k, v in state.items():
            if v.is_floating_point() and k in before and before[k].shape == v.shape:
                state[k] = before[k] + factor * (v - before[k])
        out.content[name] = ArrayRecord(state)
    return out


class RoundLog(StrategyWrapper):
    """A Message-API strategy wrapper: logs each aggregated round and how many replies it saw."""

    def aggregate_train(self, server_round, replies):
        replies = list(replies)
        with open(os.environ["BYO_WRAPPER_LOG"], "a") as f:
            f.write(json.dumps({"round": server_round, "replies": len(replies), "pid": os.getpid()}) + "\\n")
        return self.inner.aggregate_train(server_round, replies)


def round_log(strategy):
    return RoundLog(strategy)
'''

LEAK = '''
import os

import torch

from fedsim.attacks.labels import register_label_method
from fedsim.attacks.records import AttackMethod
from fedsim.core.types import LabelRestoration


def restore_negbias(model, gradients, num_samples, **options):
    """Counts proportional to the negative part of the classifier's bias gradient (largest remainder)."""
    bias = [g for g in gradients if g.dim() == 1][-1].detach().double().cpu()
    score = (-bias).clamp_min(0)
    share = score / score.sum() * num_samples if float(score.sum()) > 0 else torch.full_like(score, 0.0)
    counts = share.floor().long()
    for i in torch.argsort(share - counts, descending=True)[: num_samples - int(counts.sum())]:
        counts[i] += 1
    with open(os.environ.get("BYO_PLUGIN_LOG", os.devnull), "a") as f:
        f.write(f"{os.getpid()}\\n")
    labels = torch.repeat_interleave(torch.arange(len(counts)), counts)
    return LabelRestoration("byo-negbias", counts=counts, labels=labels)


register_label_method(AttackMethod("byo-negbias", "label", "a plugin of tests/test_byo_plugins.py (2026)",
                                   "counts from the negative bias gradient", restore_negbias))
'''


def write_plugin_package(root: Path) -> Path:
    write_package(root)
    (root / PACKAGE / "defenses.py").write_text(DEFENSES)
    (root / PACKAGE / "leak.py").write_text(LEAK)
    return root


@pytest.fixture
def user_pkg(tmp_path, monkeypatch):
    """The user's package under tmp_path, importable here and (PYTHONPATH) in every child process; the plugin's
    registration is undone afterwards."""
    from fedsim.attacks.labels import LABEL_METHODS
    from fedsim.attacks import plugins

    yield from importable_everywhere(write_plugin_package(tmp_path / "userlib"), monkeypatch)
    LABEL_METHODS.pop("byo-negbias", None)
    plugins._LOADED.discard(f"{PACKAGE}.leak")


def _error(flat: dict) -> str:
    from fedsim.evaluation.preconditions import check_attack_inputs

    with pytest.raises(ConfigError) as err:
        check_attack_inputs(from_flat(flat), "/nonexistent", files=False)
    return str(err.value)


@pytest.mark.parametrize("key, spec, fragment", [
    ("defense.custom.mods", f"{PACKAGE}.defenses:shrnk_mod", f"module '{PACKAGE}.defenses' has no attribute"),
    ("defense.custom.mods", f"{PACKAGE}.defenses:shrink_mod,{PACKAGE}.defense:shrink_mod",
     f"cannot import '{PACKAGE}.defense'"),
    ("defense.custom.mods", "shrink_mod", "is not of the form 'package.module:attr'"),
    ("defense.custom.strategy_wrappers", f"{PACKAGE}.defenses:roundlog", "has no attribute 'roundlog'"),
    ("attack.plugins", f"{PACKAGE}.laek", f"cannot import '{PACKAGE}.laek'"),
    ("attack.plugins", f"{PACKAGE}.leak:restore_negbias", "is not a module name"),
])
def test_a_typo_in_a_defense_or_plugin_reference_fails_at_load_in_one_line(user_pkg, key, spec, fragment):
    message = _error({key: spec})
    assert message.startswith(f"{key}: ") and fragment in message and "\n" not in message, message


def test_a_plugin_method_name_is_valid_only_once_its_plugin_is_loaded(user_pkg):
    unknown = _error({"attack.label_methods": "ilrg,byo-negbias"})
    assert unknown.startswith("attack.label_methods: 'byo-negbias' is not one of")
    plan = _error_free({"attack.label_methods": "ilrg,byo-negbias", "attack.plugins": f"{PACKAGE}.leak"})
    assert plan.label_methods == ("ilrg", "byo-negbias")


def _error_free(flat: dict):
    from fedsim.evaluation.preconditions import check_attack_inputs

    return check_attack_inputs(from_flat(flat), "/nonexistent", files=False)


def test_entry_points_of_installed_packages_are_loaded(user_pkg, monkeypatch):
    """``fedsim.attacks`` entry points: a module is imported, a callable called (once per process)."""
    import importlib.metadata as md

    from fedsim.attacks import plugins

    calls = []
    (user_pkg / PACKAGE / "hook.py").write_text("CALLS = []\ndef register():\n    CALLS.append(1)\n")
    eps = [md.EntryPoint("byo-leak", f"{PACKAGE}.leak", plugins.GROUP),
           md.EntryPoint("byo-hook", f"{PACKAGE}.hook:register", plugins.GROUP)]
    monkeypatch.setattr(plugins, "entry_points", lambda group: [e for e in eps if e.group == group])
    monkeypatch.setattr(plugins, "_LOADED", set())
    plan = _error_free({"attack.label_methods": "byo-negbias"})
    assert plan.label_methods == ("byo-negbias",)
    _error_free({"attack.label_methods": "byo-negbias"})
    import importlib

    calls = importlib.import_module(f"{PACKAGE}.hook").CALLS
    assert calls == [1]
    broken = [md.EntryPoint("byo-broken", f"{PACKAGE}.nothere", plugins.GROUP)]
    monkeypatch.setattr(plugins, "entry_points", lambda group: broken)
    with pytest.raises(ConfigError, match=r"^fedsim\.attacks entry point 'byo-broken' .* raised "
                                          r"ModuleNotFoundError"):
        plugins.load_plugins("")


def test_custom_defense_table_options_record_label_and_report_line(user_pkg, tmp_path):
    from fedsim.core.defense import registry as defense_registry
    from fedsim.lab.sweep.spec import describe

    preset = tmp_path / "custom.toml"
    preset.write_text(f'[defense.custom]\nmods = "{PACKAGE}.defenses:shrink_mod"\n'
                      f'[defense.custom.options]\nfactor = 0.25\n')
    cfg = load_config(preset)
    assert json.loads(cfg.defense.custom.options) == {"factor": 0.25}
    assert "custom" in defense_registry.in_force(cfg.defense)
    assert defense_registry.record(cfg.defense)["defense.custom.mods"] == f"{PACKAGE}.defenses:shrink_mod"
    assert describe(cfg) == ("shrink_mod (factor 0.25)", "shrink_mod")
    swept = cfg.replace(**{"defense.custom.options.factor": 0.5})  # what a sweep's parameters do
    assert json.loads(swept.defense.custom.options) == {"factor": 0.5}
    assert defense_registry.configured({"custom": {"mods": "a.b:c", "options": '{"factor": 0.5}'}}) == [
        "custom (mods = a.b:c, options = {'factor': 0.5})"]
    with pytest.raises(ConfigError, match=r"^defense\.custom\.strategy_wrappers: cannot be combined with "
                                          r"defense\.secagg\.enabled"):
        cfg.replace(**{"defense.custom.strategy_wrappers": f"{PACKAGE}.defenses:round_log",
                       "defense.secagg.enabled": True, "run.num_clients": 3, "train.min_train_nodes": 3})


# ---- one real federation: model + loader + client mod + strategy wrapper + plugin method, every process --------

def _federation(tmp_path: Path, name: str, **extra) -> dict:
    return {"run": {"name": name, "num_rounds": 1, "num_clients": 2, "seed": 0},
            "data": {"dataset": f"{PACKAGE}.data:blobs", "partition": "iid", "options": {"per_class": 24}},
            "model": {"name": f"{PACKAGE}.models:tiny", "options": {"hidden": 16}},
            "train": {"algorithm": "fedsgd", "lr": 0.1, "batch_size": 8, "min_train_nodes": 2}, **extra}


def _unmodified_deltas(run, out: Path, monkeypatch) -> dict[int, dict]:
    """The same federation without [defense.custom] and attacks: ``fedsim.server.app.main`` and the ClientApps
    in-process over ``tests/test_defense_objects.py``'s loopback grid."""
    import fedsim
    from flwr.supercore.task_identity import TaskIdentity

    import tests.test_defense_objects as loopback

    monkeypatch.setattr(loopback, "NODES", loopback.NODES[:run.config.run.num_clients])  # partition i of n
    for name, value in (("_run_id", 7), ("_node_id", 0), ("_task_id", 1)):
        monkeypatch.setattr(TaskIdentity, name, value)
    cfg = run.config.replace(**{"defense.custom.mods": "", "defense.custom.strategy_wrappers": "",
                                "attack.enabled": False, "run.out_dir": str(out)})
    loopback._serve(cfg)
    return _deltas(fedsim.load_run(out))


def _deltas(run) -> dict[int, dict]:
    out = {}
    for c in run.captures():
        u = run.update(c.round, c.client)
        out[u.client_id] = {k: u.weights_after[k] - u.weights_before[k] for k in u.weights_before}
    return out


@pytest.mark.slow
def test_a_federation_with_the_users_mod_wrapper_and_plugin_reaches_every_process_rows_and_report(
        user_pkg, tmp_path, monkeypatch):
    import torch

    import fedsim
    from fedsim.core.rows import LabelRow

    log, plugin_log = tmp_path / "wrapper.jsonl", tmp_path / "plugin.log"
    monkeypatch.setenv("BYO_WRAPPER_LOG", str(log))
    monkeypatch.setenv("BYO_PLUGIN_LOG", str(plugin_log))
    custom = {"mods": f"{PACKAGE}.defenses:shrink_mod", "strategy_wrappers": f"{PACKAGE}.defenses:round_log",
              "options": {"factor": 0.5}}
    attack = {"enabled": True, "label_methods": "ilrg,byo-negbias", "inversion": "none", "workers": 1,
              "plugins": f"{PACKAGE}.leak"}  # workers = 1: a spawned attack worker imports the plugin
    run = fedsim.run(_federation(tmp_path, "mine", defense={"custom": custom}, attack=attack),
                     out=tmp_path / "mine")

    # the ClientApps ran the mod: each captured update is exactly half the unmodified one (same seed, same batch),
    # which the production apps give in-process over a loopback grid with the mod off
    base, half = _unmodified_deltas(run, tmp_path / "plain", monkeypatch), _deltas(run)
    assert sorted(half) == [0, 1]
    for c in half:
        for k in half[c]:
            assert float(base[c][k].abs().max()) > 0
            torch.testing.assert_close(half[c][k], 0.5 * base[c][k], rtol=1e-5, atol=1e-7)
    # the ServerApp ran the wrapper (one aggregated round of 2 replies), in a process other than this one
    seen = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(s["round"], s["replies"]) for s in seen] == [(1, 2)] and seen[0]["pid"] != os.getpid()
    # the spawned attack worker ran the plugin method: rows like the built-ins', scored
    rows = run.rows(LabelRow)
    assert sorted((r.method, r.client) for r in rows) == [("byo-negbias", 0), ("byo-negbias", 1), ("ilrg", 0),
                                                          ("ilrg", 1)]
    mine = [r for r in rows if r.method == "byo-negbias"]
    assert all(r.ok and sum(r.restored_counts) == r.num_samples == 8 and 0.0 <= r.label_lnacc <= 1.0 for r in mine)
    assert {int(p) for p in plugin_log.read_text().split()} - {os.getpid()}  # not this process
    # recorded as a defense in force in every capture and row, shown in the report
    for c in run.captures():
        assert run.update(c.round, c.client).defenses["defense.custom.mods"] == custom["mods"]
    assert all(r.defenses["defense.custom.options"] == '{"factor": 0.5}' for r in rows)
    page = run.report_path.read_text()
    assert "byo-negbias" in page and "shrink_mod" in page and "round_log" in page
    # replay runs the plugin too (its name checked against the registry after attack.plugins is loaded)
    fedsim.attack(run, methods={"label_methods": "byo-negbias"})
    replayed = [r for r in run.rows(LabelRow) if r.replay]
    assert [(r.method, r.ok) for r in replayed] == [("byo-negbias", True)] * 2


def test_readme_defense_and_attack_snippets_run(tmp_path, monkeypatch):
    """The README's mod (as mylab/defenses.py) halves the ClientApp's reply; its plugin (mylab/attacks.py)
    registers a method the config check then accepts and that returns K labels."""
    import torch

    import fedsim.clients.app as client_app
    from fedsim.attacks.labels import LABEL_METHODS
    from fedsim.attacks import plugins
    from fedsim.evaluation.preconditions import check_attack_inputs
    from fedsim.core.experiment import make_model
    from tests.test_defense_objects import _train_message

    from flwr.supercore.task_identity import TaskIdentity

    for name, value in (("_run_id", 7), ("_node_id", 5), ("_task_id", 1)):
        monkeypatch.setattr(TaskIdentity, name, value)
    mod, plugin = _readme_blocks("<!-- tests/test_byo_plugins.py runs this block as")
    defense_toml, attack_toml = _readme_blocks("<!-- tests/test_byo_plugins.py loads this block -->")
    (tmp_path / "mylab").mkdir()
    (tmp_path / "mylab" / "__init__.py").write_text("")
    (tmp_path / "mylab" / "defenses.py").write_text(mod)
    (tmp_path / "mylab" / "attacks.py").write_text(plugin)
    monkeypatch.syspath_prepend(str(tmp_path))
    preset = tmp_path / "readme.toml"
    preset.write_text(defense_toml + attack_toml + '[run]\nnum_clients = 2\n[train]\nalgorithm = "fedsgd"\n'
                      'batch_size = 4\nmin_train_nodes = 2\n[model]\nname = "fcn3"\nwidth = 4\n')
    try:
        cfg = load_config(preset)
        plain = cfg.replace(**{"defense.custom.mods": ""})
        deltas = []
        for c in (plain, cfg):
            msg, ctx = _train_message(c, 0)
            before = msg.content["arrays"].to_torch_state_dict()
            after = client_app.app(msg, ctx).content["arrays"].to_torch_state_dict()
            deltas.append({k: after[k] - before[k] for k in before if before[k].is_floating_point()})
        for k in deltas[0]:
            torch.testing.assert_close(deltas[1][k], 0.5 * deltas[0][k], rtol=1e-5, atol=1e-7)
        assert any(float(d.abs().max()) > 0 for d in deltas[0].values())
        plan = check_attack_inputs(cfg, tmp_path / "run", files=False)
        assert plan.label_methods == ("ilrg", "negbias")
        model = make_model(cfg)
        grads = [torch.randn_like(p) for p in model.parameters()]
        restored = LABEL_METHODS["negbias"].run(model, grads, 6)
        assert int(restored.counts.sum()) == 6 and len(restored.labels) == 6
    finally:
        for name in [m for m in sys.modules if m == "mylab" or m.startswith("mylab.")]:
            del sys.modules[name]
        LABEL_METHODS.pop("negbias", None)
        plugins._LOADED.discard("mylab.attacks")


@pytest.mark.parametrize("key, value, fragment", [
    ("defense.custom.mods", f"{PACKAGE}.defenses:shrnk_mod", "has no attribute 'shrnk_mod'"),
    ("attack.plugins", f"{PACKAGE}.laek", f"cannot import '{PACKAGE}.laek'"),
])
def test_fedsim_check_refuses_a_defense_or_plugin_typo_in_one_line_exit_2(user_pkg, tmp_path, capsys, key, value,
                                                                         fragment):
    from fedsim.lab.cli import main

    preset = tmp_path / "mine.toml"
    preset.write_text(f'[model]\nname = "{PACKAGE}.models:tiny"\n[data]\ndataset = "{PACKAGE}.data:blobs"\n'
                      '[run]\nnum_clients = 2\n[train]\nmin_train_nodes = 2\n')
    code = main(["check", str(preset), "--set", f"{key}={value}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and err.startswith(f"fedsim: config error: {key}: ") and fragment in err


def test_fedsim_list_shows_a_plugin_method_once_its_plugin_is_named(user_pkg, capsys):
    """``fedsim list --plugins`` (or ``--config`` with ``attack.plugins``) lists the plugin's records beside ours."""
    import tomli_w

    from fedsim.lab.cli import main

    assert main(["list", "labels", "--format", "json"]) == 0
    assert "byo-negbias" not in {e["name"] for e in json.loads(capsys.readouterr().out)["labels"]}
    assert main(["list", "labels", "--format", "json", "--plugins", f"{PACKAGE}.leak"]) == 0
    listed = {e["name"]: e for e in json.loads(capsys.readouterr().out)["labels"]}
    assert "ilrg" in listed and listed["byo-negbias"]["paper"] == "a plugin of tests/test_byo_plugins.py (2026)"
    config = user_pkg / "plugin.toml"
    config.write_text(tomli_w.dumps({"attack": {"plugins": f"{PACKAGE}.laek"}}))
    assert main(["list", "labels", "--config", str(config)]) == 2
    assert "attack.plugins: cannot import" in capsys.readouterr().err


def test_a_strategy_wrapper_that_takes_options_gets_the_custom_table():
    """``wrapper(strategy, options=...)`` receives ``[defense.custom.options]``; ``wrapper(strategy)`` nothing."""
    from fedsim.core.defense.custom import CustomDefense
    from fedsim.server.defense_wiring import custom_options

    table = CustomDefense(strategy_wrappers="m:w", options='{"drop": 2, "mode": "trim"}')

    def with_options(strategy, options):
        return strategy

    def plain(strategy):
        return strategy

    assert custom_options(with_options, table) == {"options": {"drop": 2, "mode": "trim"}}
    assert custom_options(plain, table) == {} and custom_options(len, table) == {}
    assert custom_options(with_options, CustomDefense(strategy_wrappers="m:w")) == {"options": {}}
