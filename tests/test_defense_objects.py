"""A defense is one object (issue 20): a toy defense added from this file alone reaches config, ClientApp, captures,
rows, report and sweep labels; the ClientApp parses its run config once per message; old captures still load.

The toy defense runs on the production apps in-process (``fedsim.server.app.main`` and ``fedsim.clients.app.app`` over the
loopback grid of ``tests/test_secagg.py``): a registration made in test code reaches Flower's separate processes
only with issue 22 (plugins reach every process), so ``fedsim run`` is not used here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from types import SimpleNamespace

import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.app.message_type import MessageType
from safetensors.torch import load_file, save_file

import fedsim.clients.app as client_app
from fedsim.clients.message_config import config_of
from fedsim.core import messages as K
from fedsim.core.defense import registry as defense_registry
from fedsim.core.captures import capture_path, iter_captures, load_update, save_update
from fedsim.core.config import ConfigError, ExperimentConfig, to_toml
from fedsim.core.defense.base import opt
from fedsim.core.defense.base import CLIENT_MOD, Applier, Defense
from fedsim.core.types import ClientUpdate

NODES = [1101, 2202, 3303]


# ---- the toy defense: its table, its Flower client mod, its object -------------------------------------------
@dataclass(frozen=True)
class ScaleTable:
    """``[defense.scale]``: multiply the update ``W_after - W_before`` by a constant (a toy)."""

    enabled: bool = opt(False, doc="scale every client's update")
    factor: float = opt(1.0, minimum=0.0, doc="the constant")


def scale_mod(msg: Message, ctxt: Context, call_next) -> Message:
    """A plain Flower client mod: ``W_before + factor * (W_after - W_before)`` on the reply's float tensors."""
    factor = config_of(ctxt).defense.scale.factor
    sent = msg.content[K.ARRAYS].to_torch_state_dict()
    out = call_next(msg, ctxt)
    if out.has_error():
        return out
    state = out.content[K.ARRAYS].to_torch_state_dict()
    for k, v in state.items():
        if v.is_floating_point():
            state[k] = sent[k] + factor * (v - sent[k])
    out.content[K.ARRAYS] = ArrayRecord(state)
    return out


class ScaleDefense(Defense):
    table, schema = "scale", ScaleTable

    def parts(self, t: ScaleTable) -> list[tuple[str, str]]:
        return [(f"update scale {t.factor:g}", "update scale")]

    def appliers(self, t: ScaleTable) -> tuple[Applier, ...]:
        return (Applier(CLIENT_MOD, f"{__name__}:scale_mod", 45),)


@pytest.fixture
def scale():
    defense = defense_registry.register(ScaleDefense())
    yield defense
    defense_registry.unregister("scale")


@pytest.fixture(autouse=True)
def _serverapp_identity(monkeypatch):
    from flwr.supercore.task_identity import TaskIdentity

    for name, value in (("_run_id", 7), ("_node_id", 0), ("_task_id", 1)):
        monkeypatch.setattr(TaskIdentity, name, value)


class Loopback:
    """Each message goes to the production ClientApp (with its mods) of its node."""

    def __init__(self, cfg: ExperimentConfig) -> None:
        self.run = SimpleNamespace(run_id=7)
        self.contexts = {nid: Context(run_id=7, node_id=nid, state=RecordDict(), run_config=cfg.to_flat(),
                                      node_config={K.PARTITION_ID: pid, K.NUM_PARTITIONS: len(NODES)})
                         for pid, nid in enumerate(NODES)}
        self.train_messages = 0

    def get_node_ids(self):
        return list(self.contexts)

    def send_and_receive(self, messages, *, timeout=None):
        messages = list(messages)
        self.train_messages += sum(m.metadata.message_type == MessageType.TRAIN for m in messages)
        return [client_app.app(m, self.contexts[m.metadata.dst_node_id]) for m in messages]


def _cfg(tmp_path, **extra) -> ExperimentConfig:
    return ExperimentConfig().replace(**{
        "run.out_dir": str(tmp_path), "run.num_clients": 3, "run.num_rounds": 1, "data.partition": "iid",
        "model.width": 4, "train.algorithm": "fedsgd", "train.batch_size": 8, "train.min_train_nodes": 3,
        "train.lr": 0.1, "attack.label_methods": "ilrg", "attack.inversion": "none", **extra})


def _serve(cfg: ExperimentConfig) -> Loopback:
    """The production ServerApp's main over the loopback grid."""
    from fedsim.server.app import main

    grid = Loopback(cfg)
    main(grid, Context(run_id=7, node_id=0, node_config={}, state=RecordDict(), run_config=cfg.to_flat()))
    return grid


def _deltas(run) -> dict[int, dict[str, torch.Tensor]]:
    out = {}
    for cap in iter_captures(run):
        u = load_update(cap)
        out[u.client_id] = {k: u.weights_after[k] - u.weights_before[k] for k in u.weights_before}
    return out


# ---- tests ---------------------------------------------------------------------------------------------------
def test_a_toy_defense_from_test_code_reaches_config_client_rows_report_and_sweep(tmp_path, scale):
    from fedsim.evaluation.attacking import attack_and_score
    from fedsim.lab.report.render import write_report
    from fedsim.lab.sweep.spec import describe
    from fedsim.core.rows import LabelRow
    from fedsim.core.runfolder import RunFolder

    plain_run, toy_run = tmp_path / "plain", tmp_path / "toy"
    plain = _cfg(plain_run)
    toy = _cfg(toy_run, **{"defense.scale.enabled": True, "defense.scale.factor": 0.5})
    with pytest.raises(ConfigError, match=r"defense\.scale\.facto: unknown key; valid keys in \[defense\.scale\]: "
                                          r"enabled, factor"):
        plain.replace(**{"defense.scale.facto": 2.0})
    _serve(plain)
    _serve(toy)

    # the ClientApp ran the toy's mod: every captured update is half the undefended one (same seed, same batch)
    base, scaled = _deltas(plain_run), _deltas(toy_run)
    assert sorted(scaled) == [0, 1, 2]
    for c in scaled:
        for k in scaled[c]:
            torch.testing.assert_close(scaled[c][k], 0.5 * base[c][k], rtol=1e-5, atol=1e-7)
            assert float(base[c][k].abs().max()) > 0

    # captures and attack rows record the toy as a defense in force
    cap = sorted(iter_captures(toy_run))[0]
    assert load_update(cap).defenses["defense.scale.factor"] == 0.5
    assert list(defense_registry.in_force_from_record(load_update(cap).defenses)) == ["scale"]
    folder = RunFolder(toy_run)
    for c in iter_captures(toy_run):
        for row in attack_and_score(c, toy.to_flat(), toy_run):
            folder.append(row)
    rows = list(folder.rows(LabelRow))
    assert rows and all(r.defenses["defense.scale.enabled"] is True for r in rows)

    # the report's defense line and the sweep label come from the object
    page = write_report(toy_run).read_text(encoding="utf-8")
    assert 'defense</span><span class="v">scale (factor = 0.5)</span>' in page
    assert describe(toy) == ("update scale 0.5", "update scale")
    assert describe(plain) == ("no defense", "no defense")
    assert "[defense.scale]" in to_toml(toy)


def test_unregistered_toy_table_is_an_unknown_key():
    with pytest.raises(ConfigError, match=r"defense\.scale\.enabled: unknown"):
        ExperimentConfig().replace(**{"defense.scale.enabled": True})


def _count_parses(monkeypatch) -> list[int]:
    import fedsim.core.config as config

    calls = [0]
    check = config._check_cross_section  # once per from_flat, whoever calls it

    def counted(cfg):
        calls[0] += 1
        return check(cfg)

    monkeypatch.setattr(config, "_check_cross_section", counted)
    return calls


def _train_message(cfg: ExperimentConfig, pid: int) -> tuple[Message, Context]:
    from fedsim.core.experiment import make_model
    from fedsim.server.app import train_config

    ctx = Context(run_id=7, node_id=5, state=RecordDict(), run_config=cfg.to_flat(),
                  node_config={K.PARTITION_ID: pid, K.NUM_PARTITIONS: cfg.run.num_clients})
    msg = Message(RecordDict({K.ARRAYS: ArrayRecord(make_model(cfg).state_dict()),
                              K.CONFIG: ConfigRecord({**dict(train_config(cfg)), K.SERVER_ROUND: 1})}),
                  dst_node_id=5, message_type=MessageType.TRAIN)
    return msg, ctx


def test_client_app_checks_the_run_config_at_most_once_per_process(tmp_path, monkeypatch):
    """A train message stamped by the server (``fedsim.core.resolved``) is not checked again; an unstamped one is
    checked once, and the config kept for the messages after (before issue 34: one full check per message)."""
    import fedsim.clients.message_config as mc
    from fedsim.core.resolved import fingerprint

    cfg = _cfg(tmp_path, **{"defense.update.topk_ratio": 0.5})  # update_defense_mod reads the config too
    messages = [_train_message(cfg, pid) for pid in (0, 1)]
    assert all(m.content[K.CONFIG][K.RESOLVED] == fingerprint(cfg) for m, _ in messages)
    calls = _count_parses(monkeypatch)
    for msg, ctx in messages:
        reply = client_app.app(msg, ctx)
        assert not reply.has_error()
    assert calls[0] == 0  # the server vouched for it
    mc._SLOT.clear()  # a fresh process, unstamped messages (a SecAgg+ stage carries its config inside)
    for msg, ctx in messages:
        del msg.content[K.CONFIG][K.RESOLVED]
        assert not client_app.app(msg, ctx).has_error()
    assert calls[0] == 1


def test_secagg_client_parses_once_per_message_and_builds_no_model_per_message(tmp_path, monkeypatch):
    import fedsim.clients.message_config as mc
    from tests.test_secagg import run_loopback_secagg

    calls = _count_parses(monkeypatch)
    models = [0]
    build = mc.make_model

    def counted_model(cfg):
        models[0] += 1
        return build(cfg)

    monkeypatch.setattr(mc, "make_model", counted_model)
    mc.state_names.cache_clear()
    _, _, grid, captured = run_loopback_secagg(tmp_path)
    assert captured and len(grid.received) >= 4 * 3  # four SecAgg+ stages, three or four clients
    # one check for the test's config (ExperimentConfig().replace), then one for the client process (the SecAgg+
    # stages carry no fingerprint; the config is kept for the messages after; before issue 34: one per message)
    assert calls[0] == 1 + 1
    assert models[0] == 1


def _update(**kw) -> ClientUpdate:
    w = {"w": torch.zeros(2, 2)}
    return ClientUpdate(run_id="r", server_round=1, client_id=9999, algorithm="fedsgd", weights_before=w,
                        weights_after={"w": torch.ones(2, 2)}, lr=0.1, local_epochs=1, local_steps=1, batch_size=24,
                        num_examples=24, **kw)


def test_capture_keeps_the_cohort_out_of_the_defenses(tmp_path):
    path = save_update(_update(defenses={"defense.secagg.enabled": True}, cohort=(0, 1, 2)),
                       capture_path(tmp_path, 1, 9999))
    back = load_update(path)
    assert back.cohort == (0, 1, 2) and dict(back.defenses) == {"defense.secagg.enabled": True}


def test_an_old_capture_with_the_cohort_inside_defenses_still_loads(tmp_path):
    """Captures written before ``ClientUpdate.cohort`` carried ``cohort`` and ``aggregate_of`` in ``defenses``."""
    path = save_update(_update(defenses={"defense.secagg.enabled": True}), capture_path(tmp_path, 1, 9999))
    meta = json.loads(__import__("safetensors").safe_open(str(path), "pt").metadata()["fedsim"])
    del meta["cohort"]
    meta["defenses"].update({"cohort": [0, 2, 3], "aggregate_of": 3})
    save_file(load_file(str(path)), str(path), metadata={"fedsim": json.dumps(meta)})
    back = load_update(path)
    assert back.cohort == (0, 2, 3)
    assert dict(back.defenses) == {"defense.secagg.enabled": True}


def test_every_question_about_a_builtin_defense_is_asked_to_its_object():
    cfg = ExperimentConfig().replace(**{"defense.central_dp.clipping": "client", "defense.update.topk_ratio": 0.01,
                                        "run.num_clients": 4, "train.min_train_nodes": 4})
    forced = defense_registry.in_force(cfg.defense)
    assert list(forced) == ["central_dp", "update"]
    mods = defense_registry.appliers(cfg.defense, CLIENT_MOD)
    assert [a.name for _, _, a in mods] == ["fixedclipping", "update"]
    assert defense_registry.equal_weights(cfg.defense) and defense_registry.hides_train_loss(cfg.defense)
    assert [s.mechanism for s in defense_registry.spent_for_config(cfg, 3)] == ["central_dp"]
    assert defense_registry.describe(cfg.defense) == ("central DP z 1, clip 1 + top-k 1%", "central DP + top-k")


def test_report_configured_line_lists_only_the_dp_mechanisms_in_force(tmp_path):
    from fedsim.lab.report.render import write_report
    from fedsim.core.rows import PrivacyRow
    from fedsim.core.runfolder import RunFolder

    cfg = ExperimentConfig().replace(**{"defense.dp_sgd.enabled": True, "defense.dp_sgd.noise_multiplier": 0.7,
                                        "defense.update.topk_ratio": 0.1})
    folder = RunFolder(tmp_path)
    folder.config.write_text(to_toml(cfg))
    folder.append(PrivacyRow(round=1, epsilon=2.5, delta=1e-5, accountant="opacus-rdp", mechanism="dp_sgd"))
    page = write_report(tmp_path).read_text(encoding="utf-8")
    line = page.split("Configured: ", 1)[1].split("</p>", 1)[0]
    assert line.startswith("dp_sgd (noise_multiplier = 0.7, max_grad_norm = 1.0")
    assert "local_dp" not in line and "central_dp" not in line and "topk" not in line  # off, or not DP
    assert "update (" in page.split("full resolved config")[0]  # the defense cell lists every defense in force


def test_sweep_labels_of_every_builtin_part_are_unchanged():
    """Known answer: the label the pre-object ``describe`` gave for this combination (same words, same order)."""
    import dataclasses

    from fedsim.lab.sweep.spec import describe

    cfg = ExperimentConfig().replace(**{
        "defense.dp_sgd.enabled": True, "defense.dp_sgd.noise_multiplier": 0.5, "defense.local_dp.enabled": True,
        "defense.update.topk_ratio": 0.01, "defense.update.randk_ratio": 0.2, "defense.update.clip_norm": 2.0,
        "defense.update.noise_std": 0.1, "defense.update.quant_bits": 4, "defense.training.label_smoothing": 0.1})
    # DP-SGD + mixup is refused at load (issue 35); built past the checks, its label is still the same words
    training = dataclasses.replace(cfg.defense.training, mixup_alpha=0.4)
    cfg = dataclasses.replace(cfg, defense=dataclasses.replace(cfg.defense, training=training))
    assert describe(cfg) == (
        "DP-SGD sigma 0.5, clip 1 + local DP eps 10/round, clip 1 + top-k 1% + random-k 20% + update clip 2 + "
        "update noise 0.1 + 4-bit quantization + label smoothing 0.1 + mixup 0.4",
        "DP-SGD + local DP + top-k + random-k + update clip + update noise + quantization + label smoothing + mixup")
