"""The ClientApp's one list of mods: every defense in force whose applier is a client mod runs here.

``ClientApp(mods=[defense_mods])`` is built at import time, before the run config is known, so
:func:`defense_mods` parses the run config once per TRAIN message (``fedsim.clients.message_config``), asks the registry
of defenses which client-mod appliers are in force (``fedsim.core.defense.registry.appliers``) and runs them by their
``Applier.position``, outermost first::

    10 secaggplus_mod (Flower, [defense.secagg])  ->  fit_contract_mod (legacy FitIns/FitRes <-> our train message)
      ->  20 LocalDpMod (Flower, [defense.local_dp])  ->  30 fixedclipping_mod (Flower, [defense.central_dp]
      "client")  ->  40 update_defense_mod ([defense.update])  ->  50 a registered defense's mod
      ->  60 your [defense.custom] mods, in the order written (``fedsim.core.defense.custom``: why innermost)  ->  train()

An applier's name is a key of :data:`CLIENT_MODS` (a factory: table -> mods) or ``"module:attr"``, a Flower mod
imported as it is (a registered defense's own mod; it reads its table with ``config_of(ctxt).defense.<table>``).
The training hooks ([defense.dp_sgd], [defense.training]) run inside train() (``fedsim.core.defense.registry.train_defended``).
"""

from __future__ import annotations

from typing import Any, Callable

from flwr.app import ArrayRecord, Context, Message
from flwr.app.message_type import MessageType
from flwr.clientapp.mod import LocalDpMod, fixedclipping_mod

from fedsim.core import messages as K
from fedsim.core.defense import registry as defense_registry
from fedsim.core.defense.base import CLIENT_MOD, resolve
from fedsim.core.defense.update import defend_weights
from fedsim.core.experiment import local_seed
from fedsim.clients.message_config import config_of, parse
from fedsim.clients.secagg import fit_contract_mod, secaggplus_mod


def update_defense_mod(msg: Message, ctxt: Context, call_next) -> Message:
    """``[defense.update]``: clip / noise / sparsify / quantize ``W_after - W_before`` of the reply's float tensors."""
    d = config_of(ctxt).defense.update
    sent = msg.content[K.ARRAYS].to_torch_state_dict()
    conf = msg.content[K.CONFIG]
    out = call_next(msg, ctxt)
    if out.has_error():
        return out
    state = out.content[K.ARRAYS].to_torch_state_dict()
    floats = {k: v for k, v in state.items()
              if v.is_floating_point() and k in sent and sent[k].shape == v.shape}
    seed = local_seed(int(conf[K.SEED]), int(conf[K.SERVER_ROUND]), int(ctxt.node_config[K.PARTITION_ID])) + 7919
    state.update(defend_weights(sent, floats, d, seed=seed))
    out.content[K.ARRAYS] = ArrayRecord(state)
    return out


def _local_dp(p: Any) -> list:
    """Flower's calibration (``sensitivity = clip_norm``): noise std ``C sqrt(2 ln(1.25 / delta)) / epsilon``.
    Its relation is replace-one (sensitivity 2 C); the privacy rows account that noise at 2 C
    (``fedsim.core.accounting.local_dp_epsilon``), so ``epsilon`` here sets the noise, not the epsilon reported."""
    return [LocalDpMod(clipping_norm=p.clip_norm, sensitivity=p.clip_norm, epsilon=p.epsilon, delta=p.delta)]


#: client-mod appliers by name (``Applier(CLIENT_MOD, name)``): table -> the Flower mods, outermost first
CLIENT_MODS: dict[str, Callable[[Any], list]] = {
    "secagg": lambda t: [secaggplus_mod, fit_contract_mod],
    "local_dp": _local_dp,
    "fixedclipping": lambda t: [fixedclipping_mod],
    "update": lambda t: [update_defense_mod],
}


def mod_chain(d: Any) -> list:
    """The mods of the defenses in force in ``d`` (``cfg.defense``), outermost first."""
    chain: list = []
    for _, table, applier in defense_registry.appliers(d, CLIENT_MOD):
        if applier.name in CLIENT_MODS:
            chain += CLIENT_MODS[applier.name](table)
        else:
            chain.append(resolve(applier.name, CLIENT_MODS, "client mod"))
    return chain


def defense_mods(msg: Message, ctxt: Context, call_next) -> Message:
    """Run the configured mods (outermost first) around the ClientApp's train function."""
    if msg.metadata.message_type != MessageType.TRAIN:
        return call_next(msg, ctxt)
    conf = msg.content.config_records.get(K.CONFIG) if msg.has_content() else None
    vouched = conf.get(K.RESOLVED) if conf is not None else None  # the server checked this config
    chain = mod_chain(parse(ctxt, vouched).defense)  # kept per process and run config

    def run(i: int, m: Message, c: Context) -> Message:
        if i == len(chain):
            return call_next(m, c)
        return chain[i](m, c, lambda m2, c2: run(i + 1, m2, c2))

    return run(0, msg, ctxt)
