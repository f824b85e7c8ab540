"""Flower's SecAgg+ on the ClientApp: ``secaggplus_mod`` and the legacy "fit" contract it expects.

``SecAggPlusWorkflow`` (server/secagg.py) sends four TRAIN messages per round (setup, share keys, collect masked
vectors, unmask); Flower's ``secaggplus_mod`` answers all but one itself. For "collect masked vectors" it calls
the app with a legacy ``FitIns`` record dict (``fitins.parameters`` + ``fitins.config``) and expects a legacy
``FitRes`` back, which it quantises, weights by ``num_examples``, masks (pairwise + private masks, modular
arithmetic) and sends instead of the weights. :func:`fit_contract_mod` sits just inside it and translates both
ways, so every inner mod and ``train()`` see our usual Message-API train message.

The vector is the floating-point tensors of the state dict in order (``fedsim.core.messages.secagg_vector_names``).
Flower's SecAgg+ masks only the vector: the rest of the ``FitRes`` (``num_examples`` and its metrics) reaches the
server in the clear, per client. So the FitRes carries only :data:`CLEARTEXT_KEYS`: ``num-examples`` (the
legacy FitRes field that Flower's workflow requires; the weight the client multiplies into its vector, and the
server's count of the aggregate's examples), ``partition-id`` (which partition the node holds: an identifier,
not a measurement; the evaluation layer merges the cohort's ground truth with it) and, under DP-SGD only,
``epsilon`` (the privacy row; a function of ``n``, the batch size, the noise and the rounds, all of which
Opacus' accountant treats as public). ``train_loss``, ``local-steps`` and DP-SGD's other figures stay on the
client. ``num-examples`` must not exceed ``defense.secagg.max_weight``, and no weighted weight may leave
``[-clipping_range, clipping_range]``: such a client fails its round (recovered like a dropout) instead of
silently corrupting the aggregate.
"""

from __future__ import annotations

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.client.mod import secaggplus_mod
from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.compat.common import recorddict_compat as compat

from fedsim.core import messages as K
from fedsim.core.defense.secagg import secagg_plan
from fedsim.clients.message_config import config_of, state_names

__all__ = ["CLEARTEXT_KEYS", "fit_contract_mod", "secaggplus_mod"]

#: What a SecAgg+ reply holds in the clear, per client, besides the masked vector (see the module docstring):
#: ``num-examples`` as the FitRes's ``num_examples``, the others in its metrics.
CLEARTEXT_KEYS = (K.NUM_EXAMPLES, K.PARTITION_ID, K.EPSILON)


def fit_contract_mod(msg: Message, ctxt: Context, call_next) -> Message:
    """Legacy FitIns in -> our train message -> our reply -> legacy FitRes out (inside ``secaggplus_mod``)."""
    cfg = config_of(ctxt)  # parsed once per message by the outermost mod
    fitins = compat.recorddict_to_fitins(msg.content, keep_input=True)
    names = state_names(cfg)  # one model per config, not per message
    arrays = parameters_to_ndarrays(fitins.parameters)
    if len(arrays) != len(names):
        raise ValueError(f"SecAgg+ fit instruction carries {len(arrays)} arrays, the model has {len(names)}")
    state = {n: torch.from_numpy(np.array(a)) for n, a in zip(names, arrays)}
    original = msg.content
    msg.content = RecordDict({K.ARRAYS: ArrayRecord(state), K.CONFIG: ConfigRecord(dict(fitins.config))})
    try:
        out = call_next(msg, ctxt)
    finally:
        msg.content = original
    if out.has_error():
        return out
    return Message(to_fitres(out.content, secagg_plan(cfg).max_weight, cfg.defense.secagg.clipping_range),
                   reply_to=msg)


def to_fitres(content: RecordDict, max_weight: float, clipping_range: float) -> RecordDict:
    """Our train reply (arrays, metrics, meta) as a legacy FitRes record dict carrying the SecAgg+ vector."""
    state = content[K.ARRAYS].to_torch_state_dict()
    metrics = dict(content[K.METRICS])
    num_examples = int(metrics[K.NUM_EXAMPLES])
    if num_examples > max_weight:
        raise ValueError(f"num-examples {num_examples} exceeds defense.secagg.max_weight={max_weight:g}: the "
                         "weighted update would be clipped by SecAgg+'s quantiser")
    vector = [state[n].detach().cpu().numpy() for n in K.secagg_vector_names(state)]
    peak = max(float(np.abs(v).max()) for v in vector if v.size) * num_examples / max_weight
    if peak > clipping_range:
        raise ValueError(f"a weighted weight reaches {peak:.3g} > defense.secagg.clipping_range={clipping_range:g}: "
                         "SecAgg+'s quantiser would clip it and corrupt the aggregate")
    fields = {**metrics, **dict(content[K.META])}
    legacy_metrics = {k: fields[k] for k in CLEARTEXT_KEYS if k in fields and k != K.NUM_EXAMPLES}
    fitres = FitRes(Status(Code.OK, ""), ndarrays_to_parameters(vector), num_examples, legacy_metrics)
    return compat.fitres_to_recorddict(fitres, keep_input=True)
