"""The ClientApp's one list of mods: every ``[defense]`` table that acts on messages is one Flower mod here.

``ClientApp(mods=[defense_mods])`` is built at import time, before the run config is known, so
:func:`defense_mods` reads ``[defense]`` from ``context.run_config`` on each TRAIN message and runs the mods that
are switched on, outermost first::

    secaggplus_mod (Flower, [defense.secagg])  ->  fit_contract_mod (legacy FitIns/FitRes <-> our train message)
      ->  LocalDpMod (Flower, [defense.local_dp])  ->  fixedclipping_mod (Flower, [defense.central_dp] "client")
      ->  update_defense_mod ([defense.update])  ->  train()

The training hooks ([defense.dp_sgd], [defense.training]) run inside train() (``fedsim.defended_training``).
"""

from __future__ import annotations

from flwr.app import ArrayRecord, Context, Message
from flwr.app.message_type import MessageType
from flwr.clientapp.mod import LocalDpMod, fixedclipping_mod

from fedsim import messages as K
from fedsim.config import from_flat
from fedsim.defense_config import DefenseSection
from fedsim.defenses import defend_weights
from fedsim.experiment import local_seed
from clients.secagg import fit_contract_mod, secaggplus_mod


def update_defense_mod(msg: Message, ctxt: Context, call_next) -> Message:
    """``[defense.update]``: clip / noise / sparsify / quantize ``W_after - W_before`` of the reply's float tensors."""
    d = from_flat(ctxt.run_config).defense.update
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


def mod_chain(d: DefenseSection) -> list:
    """The mods of the switched-on tables, outermost first."""
    chain: list = []
    if d.secagg.enabled:
        chain += [secaggplus_mod, fit_contract_mod]
    if d.local_dp.enabled:
        p = d.local_dp
        chain.append(LocalDpMod(clipping_norm=p.clip_norm, sensitivity=p.clip_norm, epsilon=p.epsilon, delta=p.delta))
    if d.central_dp.clipping == "client":
        chain.append(fixedclipping_mod)
    if d.update.active:
        chain.append(update_defense_mod)
    return chain


def defense_mods(msg: Message, ctxt: Context, call_next) -> Message:
    """Run the configured mods (outermost first) around the ClientApp's train function."""
    if msg.metadata.message_type != MessageType.TRAIN:
        return call_next(msg, ctxt)
    chain = mod_chain(from_flat(ctxt.run_config).defense)

    def run(i: int, m: Message, c: Context) -> Message:
        if i == len(chain):
            return call_next(m, c)
        return chain[i](m, c, lambda m2, c2: run(i + 1, m2, c2))

    return run(0, msg, ctxt)
