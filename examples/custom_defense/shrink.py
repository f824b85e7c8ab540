"""Your defense: a plain Flower client mod. It shrinks each client's update ``W_after - W_before`` by
``factor`` and adds Gaussian noise of std ``noise`` (both from ``[defense.custom.options]``).

fedsim runs it innermost, right around ``train()``: it sees the plaintext weights the client trained and what
it returns is what the server (and the curious attacker) receives, after any of fedsim's own defenses.
"""

import torch
from flwr.app import ArrayRecord

from fedsim.core.defense.custom import options


def shrink_mod(msg, ctxt, call_next):
    """``W_before + factor * (W_after - W_before) + N(0, noise^2)`` on every float tensor of the reply."""
    opts = options(ctxt)  # {"factor": ..., "noise": ...} from the run config
    factor, noise = float(opts.get("factor", 1.0)), float(opts.get("noise", 0.0))
    sent = {name: rec.to_torch_state_dict() for name, rec in msg.content.array_records.items()}
    out = call_next(msg, ctxt)
    if out.has_error():
        return out
    gen = torch.Generator().manual_seed(int(ctxt.node_id) % (2**31))
    for name, rec in list(out.content.array_records.items()):
        state, before = rec.to_torch_state_dict(), sent.get(name, {})
        for key, after in state.items():
            if after.is_floating_point() and key in before and before[key].shape == after.shape:
                delta = factor * (after - before[key])
                if noise:
                    delta = delta + noise * torch.randn(after.shape, generator=gen, dtype=after.dtype)
                state[key] = before[key] + delta
        out.content[name] = ArrayRecord(state)
    return out
