"""The honest-but-curious strategy: aggregates exactly like the wrapped strategy, but intercepts every reply.

Modelled on Flower's ``DifferentialPrivacyServerSideFixedClipping`` wrapper: ``configure_train`` remembers
the weights sent in each round, ``aggregate_train`` validates each reply, turns it into a ``ClientUpdate``,
hands it to the sinks (capture store, attack scheduler) and then lets the wrapped strategy aggregate the
accepted replies. Malformed replies are rejected with a logged reason and the round goes on.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedsim.rows import RejectionRow
from fedsim.runfolder import RunFolder
from fedsim.types import ClientUpdate, InvalidUpdateError

log = logging.getLogger("fedsim.server")

UpdateSink = Callable[[ClientUpdate], None]


@dataclass(frozen=True)
class TrainSettings:
    """What the server configured (and therefore knows) about local training."""

    algorithm: str
    lr: float
    local_epochs: int
    batch_size: int
    defenses: Mapping[str, Any]


def update_norm(update: ClientUpdate) -> float:
    """L2 norm of ``weights_after - weights_before`` over the parameters."""
    total = 0.0
    for name, after in update.weights_after.items():
        if after.is_floating_point():
            total += float(((after.double() - update.weights_before[name].double()) ** 2).sum())
    return math.sqrt(total)


class CuriousStrategy(Strategy):
    """Wrap a Message-API strategy; aggregate honestly, capture every accepted client update."""

    def __init__(self, inner: Strategy, *, run_id: str, parameter_names: list[str], settings: TrainSettings,
                 sinks: Iterable[UpdateSink] = (), run_folder: RunFolder | None = None,
                 max_num_examples: int = 10_000_000, max_norm_ratio: float = 1000.0) -> None:
        self.inner = inner
        self.run_id = run_id
        self.parameter_names = list(parameter_names)
        self.settings = settings
        self.sinks = list(sinks)
        self.run_folder = run_folder
        self.max_num_examples = max_num_examples
        self.max_norm_ratio = max_norm_ratio
        self._sent: dict[int, dict[str, torch.Tensor]] = {}
        self.accepted: list[ClientUpdate] = []  # of the latest round only

    # ---- delegation -------------------------------------------------------------------------------------
    def summary(self) -> None:
        log.info("CuriousStrategy wrapping %s (captures every reply)", type(self.inner).__name__)
        self.inner.summary()

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        state = arrays.to_torch_state_dict()
        self._sent = {server_round: {k: v.detach().clone() for k, v in state.items()}}
        return self.inner.configure_train(server_round, arrays, config, grid)

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        return self.inner.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        return self.inner.aggregate_evaluate(server_round, replies)

    # ---- interception -----------------------------------------------------------------------------------
    def aggregate_train(self, server_round: int,
                        replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        kept: list[Message] = []
        self.accepted = []
        valid: list[tuple[Message, ClientUpdate]] = []
        for msg in replies:
            if msg.has_error():
                kept.append(msg)  # the wrapped strategy logs and skips it
                continue
            try:
                update = self.to_update(server_round, msg)
            except (InvalidUpdateError, KeyError, TypeError, ValueError) as exc:
                self.reject(server_round, msg, str(exc))
                continue
            valid.append((msg, update))
        norms = [update_norm(u) for _, u in valid]
        for (msg, update), norm in zip(valid, norms):
            reason = self.norm_problem(norm, norms)
            if reason:
                self.reject(server_round, msg, reason)
                continue
            kept.append(msg)
            self.accepted.append(update)
            for sink in self.sinks:
                try:
                    sink(update)
                except Exception as exc:  # a sink (capture, attack) must never kill the federation
                    log.exception("sink %r failed on round %d client %d: %s", sink, server_round,
                                  update.client_id, exc)
        if not any(not m.has_error() for m in kept):
            log.warning("round %d: no valid replies to aggregate", server_round)
            return None, None
        # replies arrive in a nondeterministic order and float sums are not associative: aggregate in client order
        order = {id(m): u.client_id for m, u in valid}
        kept.sort(key=lambda m: (m.has_error(), order.get(id(m), 0)))
        return self.inner.aggregate_train(server_round, kept)

    def norm_problem(self, norm: float, norms: list[float]) -> str | None:
        """A reason when an update's L2 norm is implausible (absurdly large; see docs/reliability.md).

        With a whole-update clipping bound (``defense.clip_norm``) configured, an update far above it (10x,
        plus what the configured noise adds) cannot come from an honest client. Independently, with at least 3
        replies, an update more than ``max_norm_ratio`` times the round's median norm is rejected.
        """
        d = self.settings.defenses or {}
        clip = float(d.get("clip_norm") or 0.0)
        if clip > 0 and not d.get("secagg"):
            bound = 10 * clip + 10 * float(d.get("noise_std") or 0.0) * self._num_params ** 0.5
            if norm > bound:
                return f"update norm {norm:.3g} far above the clipping bound defense.clip_norm={clip:g}"
        finite = sorted(n for n in norms if math.isfinite(n))
        if len(finite) >= 3:
            median = finite[len(finite) // 2] if len(finite) % 2 else 0.5 * (finite[len(finite) // 2 - 1] +
                                                                              finite[len(finite) // 2])
            if median > 0 and norm > self.max_norm_ratio * median:
                return f"update norm {norm:.3g} is over {self.max_norm_ratio:g}x the round's median {median:.3g}"
        return None

    @property
    def _num_params(self) -> int:
        sent = next(iter(self._sent.values()), {})
        return sum(sent[n].numel() for n in self.parameter_names if n in sent)

    def to_update(self, server_round: int, msg: Message) -> ClientUpdate:
        """Validate a reply against the weights sent this round and build the ``ClientUpdate``."""
        sent = self._sent.get(server_round)
        if sent is None:
            raise InvalidUpdateError(f"no weights were sent in round {server_round}")
        content = msg.content
        for key, kind in (("arrays", "ArrayRecord"), ("metrics", "MetricRecord"), ("meta", "ConfigRecord")):
            if key not in content:
                raise InvalidUpdateError(f"reply lacks the {kind} {key!r}")
        received = content["arrays"].to_torch_state_dict()
        missing, extra = sorted(set(sent) - set(received)), sorted(set(received) - set(sent))
        if missing or extra:
            raise InvalidUpdateError(f"array keys differ from the model: missing {missing[:5]}, extra {extra[:5]}")
        metrics, meta = content["metrics"], content["meta"]
        num_examples = metrics.get("num-examples")
        if not isinstance(num_examples, (int, float)) or isinstance(num_examples, bool) or \
                not math.isfinite(num_examples) or num_examples != int(num_examples) or \
                not 1 <= num_examples <= self.max_num_examples:
            raise InvalidUpdateError(f"num-examples={num_examples!r} is not a plausible count")
        for key, value in metrics.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise InvalidUpdateError(f"metric {key!r} is {value}")
        params = set(self.parameter_names)
        s = self.settings
        return ClientUpdate(
            run_id=self.run_id, server_round=server_round, client_id=int(meta["partition-id"]),
            algorithm=s.algorithm,
            weights_before={n: sent[n] for n in self.parameter_names},
            weights_after={n: received[n] for n in self.parameter_names},
            buffers_after={n: t for n, t in received.items() if n not in params},
            buffers_before={n: t for n, t in sent.items() if n not in params},
            lr=s.lr, local_epochs=s.local_epochs, local_steps=int(meta["local-steps"]), batch_size=s.batch_size,
            num_examples=int(num_examples), defenses=dict(s.defenses),
        )

    def reject(self, server_round: int, msg: Message, reason: str) -> None:
        node = msg.metadata.src_node_id
        client = None
        try:
            client = int(msg.content["meta"]["partition-id"])
        except Exception:  # the reply may be missing exactly this
            pass
        log.warning("round %d: rejected reply from node %s (client %s): %s", server_round, node, client, reason)
        if self.run_folder is not None:
            self.run_folder.append(RejectionRow(round=server_round, node=node, client=client, reason=reason))
