"""Reply screening before anything else sees a reply: structure, plausibility bounds, lost rounds.

``ReplyScreen`` turns a Flower reply into a validated ``ClientUpdate`` or a logged rejection:

- *structure*: the records a reply must carry, array keys/shapes/dtypes equal to what was sent, finite values;
- *claimed example count* (the FedAvg weight): an integer in ``[1, validation.max_num_examples]``, at most the
  configured batch under FedSGD (without DP-SGD), and at most ``validation.examples_ratio`` times the lower median
  of the claims accepted in the last ``validation.history`` rounds and this round — a client claiming 9,999,999
  examples does not get ~100 % of the FedAvg weight, even in a two-node federation;
- *update norm*: at most ``validation.max_update_norm`` (when set), far above a configured whole-update clipping
  bound is implausible, and at most ``validation.norm_ratio`` times the lower median of recent accepted norms.
- *share of the aggregate weight*: FedAvg weights a reply by the client's own claim, which the server cannot
  verify, so no accepted reply may carry more than ``validation.max_weight_share`` (default 0.5) of the round's
  weight (or ``1 / replies`` when the cohort is too small for the bound). A larger claim is *capped*, not rejected:
  the largest claims are lowered to one common integer weight (water-filling, :func:`capped_claims`) so that each
  is at most the bound, the reply still counts, and a ``rejections.jsonl`` row (``action = "capped"``) gives the
  claim, the weight used and the reason. Capping keeps a legitimately large client (unequal Dirichlet partitions)
  in the aggregate with a bounded pull, where rejecting it would drop honest data and, with two nodes, would drop
  one of any unequal pair; the capture keeps the claim itself (what the server saw), only FedAvg's weight changes.
  Claims of 50 and 5000 in a two-node round weigh 0.5 / 0.5 instead of 0.01 / 0.99. Every preset's cohort stays
  under 0.5 (``configs/fedavg_dirichlet.toml``: at most 0.45), so their runs do not change.

- *client id*: the reply's ``partition-id`` names the client its update is captured, attacked and scored as, and
  the client alone writes it, so it is checked against what the server knows (:meth:`ReplyScreen.check_ids`):
  an integer in ``[0, run.num_clients)``; from a node the server sent a train message to this round (the
  messages ``configure_train`` returned: the cohort it sampled); the partition that node answered as before
  (learned at first sight: the node config that names it is the client's, never sent to the server), and not a
  partition another node still connected answered as; and claimed by one reply of the round. A partition claimed
  twice at first sight is rejected on both sides (the server cannot tell which node holds it). So no update is
  aggregated twice, overwrites another client's capture or is scored against another client's ground truth. A
  SuperNode that restarts under a new node id takes its partition along once its old id left the grid.

The *lower* median (the smaller middle value) keeps one outlier out of its own reference with as few as two
replies; the history across rounds covers a round where most replies are bad. ``ReplyGate`` is the outermost
strategy of the stack: it drops error replies and rejected ones *before* Flower's DP wrappers see them (they
otherwise skip the whole round on one error, or raise inside clipping on a malformed reply), writes a
``lost_round`` row when nothing is left to aggregate, and passes the valid replies inward in client order.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Iterable, Mapping, Sequence

import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedsim.core import messages as K
from fedsim.core.defense.registry import in_force_from_record
from fedsim.core.rows import LostRoundRow, RejectionRow
from fedsim.core.runfolder import RunFolder
from fedsim.core.types import ClientUpdate, InvalidUpdateError
from fedsim.server.wrapping import StrategyWrapper

log = logging.getLogger("fedsim.server")


@dataclass(frozen=True)
class TrainSettings:
    """What the server configured (and therefore knows) about local training."""

    algorithm: str
    lr: float
    local_epochs: int
    batch_size: int
    defenses: Mapping[str, Any]
    max_claim: int | None = None  # largest honest num-examples (FedSGD without DP-SGD: the batch size)


@dataclass(frozen=True)
class Bounds:
    """Plausibility bounds of ``[validation]`` (see the module docstring)."""

    max_num_examples: int = 1_000_000
    examples_ratio: float = 100.0
    norm_ratio: float = 1000.0
    max_update_norm: float = 0.0
    history: int = 20
    max_weight_share: float = 0.5


def update_norm(update: ClientUpdate) -> float:
    """L2 norm of ``weights_after - weights_before`` over the parameters."""
    total = 0.0
    for name, after in update.weights_after.items():
        if after.is_floating_point():
            total += float(((after.double() - update.weights_before[name].double()) ** 2).sum())
    return math.sqrt(total)


def capped_claims(claims: Sequence[int], max_share: float) -> list[int]:
    """``claims`` with the largest lowered to one common integer cap so that none is over ``max_share`` of their
    sum (``1 / len(claims)`` when that is larger: equal weights are the tightest possible); unchanged when none is.

    Water-filling: with the ``k`` largest claims capped at ``c`` and ``rest`` the sum of the others, a capped share
    is ``c / (rest + k c)``, which equals the bound at ``c = s rest / (1 - k s)``; ``k`` grows until the largest
    uncapped claim fits under ``c``. Exact arithmetic (``Fraction``); flooring ``c`` only lowers every share of a
    capped claim, and an uncapped (integer) claim ``<= c`` is ``<= floor(c)``, so every share stays within the bound.
    """
    n = len(claims)
    if n < 2 or max_share >= 1:
        return list(claims)
    share = max(Fraction(str(float(max_share))), Fraction(1, n))  # the decimal bound as written (0.6 = 3/5)
    order = sorted(claims, reverse=True)
    rest = sum(order)
    if order[0] <= share * rest:
        return list(claims)
    cap = Fraction(order[-1])
    for k in range(1, n):  # share >= 1/n: the loop ends by k = n - 1 (all but the smallest capped at it)
        rest -= order[k - 1]
        cap = share * rest / (1 - k * share)
        if order[k] <= cap:
            break
    top = max(1, math.floor(cap))
    return [min(c, top) for c in claims]


def _reported_loss(metrics: Mapping[str, Any]) -> float | None:
    """The reply's ``train_loss`` as the server received it (``ClientUpdate.reported_loss``): ``None`` when the
    client sent none (a DP mechanism or SecAgg+ hides it: ``fedsim.clients.app.releases_train_loss``) or sent
    something that is no loss (not a finite non-negative number); never made up, and never a reason to reject."""
    value = metrics.get(K.TRAIN_LOSS)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        return None
    return float(value)


def lower_median(values: Iterable[float]) -> float | None:
    """The smaller middle value of the finite ``values`` (None when there are none)."""
    xs = sorted(v for v in values if math.isfinite(v))
    return xs[(len(xs) - 1) // 2] if xs else None


class ReplyScreen:
    """Validates replies of one federation against the weights sent and the bounds; remembers history."""

    def __init__(self, parameter_names: list[str], settings: TrainSettings, run_id: str,
                 folder: RunFolder | None = None, bounds: Bounds = Bounds(), num_clients: int | None = None) -> None:
        self.parameter_names = list(parameter_names)
        self.settings = settings
        self.run_id = run_id
        self.folder = folder
        self.bounds = bounds
        self.num_clients = num_clients  # run.num_clients: partition ids are in [0, num_clients) (None: unchecked)
        self.sent: dict[int, dict[str, torch.Tensor]] = {}
        self.cohort: dict[int, frozenset[int]] = {}  # round -> node ids sent a train message (its latest round)
        self.connected: dict[int, frozenset[int]] = {}  # round -> node ids on the grid then (when the grid says)
        self.partition_of: dict[int, int] = {}  # node id -> the partition it answered as, at first sight
        self.node_of: dict[int, int] = {}  # partition id -> the node that answered as it
        self._norms: deque[list[float]] = deque(maxlen=max(1, bounds.history))
        self._claims: deque[list[int]] = deque(maxlen=max(1, bounds.history))
        self._claimed: dict[tuple[int, int], int] = {}  # (round, client) -> claim, of replies whose weight was capped

    def remember_sent(self, server_round: int, arrays: ArrayRecord) -> None:
        state = arrays.to_torch_state_dict()
        self.sent = {server_round: {k: v.detach().clone() for k, v in state.items()}}

    def remember_cohort(self, server_round: int, messages: Sequence[Message], grid: Any = None) -> None:
        """The nodes sent a train message in ``server_round`` (``messages``' destinations) and the nodes on the
        ``grid`` then. No message (a strategy that trains nobody, or a unit test that stubs ``configure_train``):
        no cohort is known and only the partition checks apply (Flower sends nothing, so no reply comes back)."""
        nodes = frozenset(int(m.metadata.dst_node_id) for m in messages)
        self.cohort = {server_round: nodes} if nodes else {}
        try:
            self.connected = {server_round: frozenset(int(n) for n in grid.get_node_ids())}
        except Exception:  # noqa: BLE001 - no grid (or a stub): a partition never moves to another node
            self.connected = {}

    def partition_id(self, meta: Mapping[str, Any]) -> int:
        """The reply's ``partition-id``: an integer in ``[0, num_clients)``, else ``InvalidUpdateError``."""
        value = meta[K.PARTITION_ID]
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidUpdateError(f"{K.PARTITION_ID}={value!r} is not an integer")
        if self.num_clients is not None and not 0 <= value < self.num_clients:
            raise InvalidUpdateError(f"{K.PARTITION_ID}={value} outside [0, {self.num_clients}) (run.num_clients)")
        return value

    # ---- one reply -------------------------------------------------------------------------------------
    def to_update(self, server_round: int, msg: Message) -> ClientUpdate:
        """Validate a reply's structure against the weights sent this round and build the ``ClientUpdate``."""
        sent = self.sent.get(server_round)
        if sent is None:
            raise InvalidUpdateError(f"no weights were sent in round {server_round}")
        content = msg.content
        for key, kind in ((K.ARRAYS, "ArrayRecord"), (K.METRICS, "MetricRecord"), (K.META, "ConfigRecord")):
            if key not in content:
                raise InvalidUpdateError(f"reply lacks the {kind} {key!r}")
        received = content[K.ARRAYS].to_torch_state_dict()
        missing, extra = sorted(set(sent) - set(received)), sorted(set(received) - set(sent))
        if missing or extra:
            raise InvalidUpdateError(f"array keys differ from the model: missing {missing[:5]}, extra {extra[:5]}")
        metrics, meta = content[K.METRICS], content[K.META]
        num_examples = metrics.get(K.NUM_EXAMPLES)
        if not isinstance(num_examples, (int, float)) or isinstance(num_examples, bool) or \
                not math.isfinite(num_examples) or num_examples != int(num_examples) or num_examples < 1:
            raise InvalidUpdateError(f"num-examples={num_examples!r} is not a count")
        if num_examples > self.bounds.max_num_examples:
            raise InvalidUpdateError(f"num-examples={int(num_examples)} above validation.max_num_examples="
                                     f"{self.bounds.max_num_examples}")
        for key, value in metrics.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise InvalidUpdateError(f"metric {key!r} is {value}")
        params = set(self.parameter_names)
        s = self.settings
        client = self.partition_id(meta)
        num_examples = self._claimed.get((server_round, client), num_examples)  # the claim, not a capped weight
        return ClientUpdate(
            run_id=self.run_id, server_round=server_round, client_id=client,
            algorithm=s.algorithm,
            weights_before={n: sent[n] for n in self.parameter_names},
            weights_after={n: received[n] for n in self.parameter_names},
            buffers_after={n: t for n, t in received.items() if n not in params},
            buffers_before={n: t for n, t in sent.items() if n not in params},
            lr=s.lr, local_epochs=s.local_epochs, local_steps=int(meta[K.LOCAL_STEPS]), batch_size=s.batch_size,
            num_examples=int(num_examples), defenses=dict(s.defenses), reported_loss=_reported_loss(metrics),
        )

    def claim_problem(self, claim: int, claims: list[int]) -> str | None:
        b = self.bounds
        if self.settings.max_claim is not None and claim > self.settings.max_claim:
            return f"num-examples={claim} above the configured batch ({self.settings.max_claim}) of one FedSGD step"
        ref = lower_median([c for past in self._claims for c in past] + claims)
        if ref and claim > b.examples_ratio * ref:
            return (f"num-examples={claim} is over validation.examples_ratio={b.examples_ratio:g}x the lower median "
                    f"claim {ref:g}")
        return None

    def norm_problem(self, norm: float, norms: list[float]) -> str | None:
        b = self.bounds
        if not math.isfinite(norm):
            return f"update norm is {norm}"
        if b.max_update_norm > 0 and norm > b.max_update_norm:
            return f"update norm {norm:.3g} above validation.max_update_norm={b.max_update_norm:g}"
        update = in_force_from_record(self.settings.defenses or {}).get("update")  # [defense.update] if in force
        clip = update.clip_norm if update is not None else 0.0
        if clip > 0:
            bound = 10 * clip + 10 * update.noise_std * self._num_params ** 0.5
            if norm > bound:
                return f"update norm {norm:.3g} far above the clipping bound defense.update.clip_norm={clip:g}"
        ref = lower_median([n for past in self._norms for n in past] + norms)
        if ref and ref > 0 and norm > b.norm_ratio * ref:
            return (f"update norm {norm:.3g} is over validation.norm_ratio={b.norm_ratio:g}x the lower median "
                    f"norm {ref:.3g} of recent updates")
        return None

    @property
    def _num_params(self) -> int:
        sent = next(iter(self.sent.values()), {})
        return sum(sent[n].numel() for n in self.parameter_names if n in sent)

    # ---- one round -------------------------------------------------------------------------------------
    def id_problem(self, server_round: int, node: int, client: int) -> str | None:
        """Why a reply from ``node`` cannot be client ``client`` in ``server_round`` (None: it can): see the module
        docstring, *client id*."""
        cohort = self.cohort.get(server_round)
        if cohort is not None and node not in cohort:
            return (f"node {node} was not sent a train message in round {server_round} (sampled: "
                    f"{', '.join(map(str, sorted(cohort)))})")
        known = self.partition_of.get(node)
        if known is not None and known != client:
            return f"node {node} answered as {K.PARTITION_ID} {known} before; it now claims {client}"
        holder = self.node_of.get(client)
        if holder is not None and holder != node and holder in self.connected.get(server_round, (holder,)):
            return f"{K.PARTITION_ID} {client} is held by node {holder}; node {node} claims it"
        return None

    def check_ids(self, server_round: int, structured: list[tuple[Message, ClientUpdate]]
                  ) -> list[tuple[Message, ClientUpdate]]:
        """The replies whose client id holds (``id_problem``) and is claimed once this round; the others rejected.
        The nodes of the kept ones are bound to their partitions (a partition moves with a new node id once the
        node that held it left the grid)."""
        kept: list[tuple[Message, ClientUpdate]] = []
        for msg, update in structured:
            reason = self.id_problem(server_round, msg.metadata.src_node_id, update.client_id)
            if reason:
                self.reject(server_round, msg, reason)
            else:
                kept.append((msg, update))
        claims: dict[int, list[int]] = {}
        for msg, update in kept:
            claims.setdefault(update.client_id, []).append(msg.metadata.src_node_id)
        unique = []
        for msg, update in kept:
            nodes = claims[update.client_id]
            if len(nodes) > 1:
                self.reject(server_round, msg, f"{K.PARTITION_ID} {update.client_id} claimed by {len(nodes)} replies "
                            f"this round (nodes {', '.join(map(str, nodes))}): none of them is aggregated")
                continue
            node = msg.metadata.src_node_id
            old = self.node_of.get(update.client_id)
            if old is not None and old != node:
                log.info("round %d: %s %d moves from node %s (left the grid) to node %s", server_round,
                         K.PARTITION_ID, update.client_id, old, node)
                self.partition_of.pop(old, None)
            self.partition_of[node], self.node_of[update.client_id] = update.client_id, node
            unique.append((msg, update))
        return unique

    def screen(self, server_round: int, replies: list[Message]) -> list[tuple[Message, ClientUpdate]]:
        """The valid replies of a round (in client order) with their updates; every other one is logged."""
        structured: list[tuple[Message, ClientUpdate]] = []
        self._claimed = {}
        for msg in replies:
            if msg.has_error():
                self.reject(server_round, msg, f"client reported an error: {_error_text(msg)}")
                continue
            try:
                structured.append((msg, self.to_update(server_round, msg)))
            except (InvalidUpdateError, KeyError, TypeError, ValueError) as exc:
                self.reject(server_round, msg, str(exc))
        structured = self.check_ids(server_round, structured)
        norms = [update_norm(u) for _, u in structured]
        claims = [u.num_examples for _, u in structured]
        valid = []
        for (msg, update), norm in zip(structured, norms):
            reason = self.claim_problem(update.num_examples, claims) or self.norm_problem(norm, norms)
            if reason:
                self.reject(server_round, msg, reason)
                continue
            valid.append((msg, update))
        self._norms.append([update_norm(u) for _, u in valid])
        self._claims.append([u.num_examples for _, u in valid])
        self.cap_weights(server_round, valid)
        return sorted(valid, key=lambda mu: mu[1].client_id)  # float sums depend on order: aggregate by client

    def cap_weights(self, server_round: int, valid: list[tuple[Message, ClientUpdate]]) -> None:
        """Lower the FedAvg weight (``num-examples`` of the reply) of any claim over ``max_weight_share``."""
        claims = [u.num_examples for _, u in valid]
        capped = capped_claims(claims, self.bounds.max_weight_share)
        total = sum(claims)
        bound = max(self.bounds.max_weight_share, 1 / max(1, len(claims)))
        for (msg, update), claim, weight in zip(valid, claims, capped):
            if weight == claim:
                continue
            msg.content[K.METRICS][K.NUM_EXAMPLES] = weight
            self._claimed[(server_round, update.client_id)] = claim
            small = "" if bound == self.bounds.max_weight_share else f" (1/{len(claims)} replies: {bound:.3g})"
            self.reject(server_round, msg, f"num-examples={claim} weighted as {weight}: its share {claim / total:.3g} "
                        f"of the round's claims is over validation.max_weight_share="
                        f"{self.bounds.max_weight_share:g}{small} (FedAvg weights by the client's own, "
                        "unverifiable claim)", action="capped")

    def reject(self, server_round: int, msg: Message, reason: str, action: str | None = None) -> None:
        """Log (and write to ``rejections.jsonl``) a rejected reply, or one accepted with ``action`` (capped)."""
        node = msg.metadata.src_node_id
        client = None
        try:
            client = int(msg.content[K.META][K.PARTITION_ID])
        except Exception:  # the reply may be missing exactly this (or be an error without content)
            pass
        log.warning("round %d: %s reply from node %s (client %s): %s", server_round, action or "rejected", node,
                    client, reason)
        if self.folder is not None:
            self.folder.append(RejectionRow(round=server_round, node=node, client=client, reason=reason,
                                            action=action))


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*(Error|Exception|Dropout|Interrupt|Exit)[\w]*)(: .*)?$")


def _error_text(msg: Message) -> str:
    """One readable line of a client's error reply: the exception line of its traceback when there is one
    (Ray wraps it in colour codes and actor details), else the start of the reason."""
    err = getattr(msg, "error", None)
    reason = _ANSI.sub("", str(getattr(err, "reason", None) or err))
    lines = [line.strip() for line in reason.splitlines() if line.strip()]
    for line in reversed(lines):  # Flower's ClientAppException: "Exception ... occurred. Message: <the error>"
        if "occurred. Message: " in line:
            return line.split("occurred. Message: ", 1)[1].rstrip("'>")[:200]
    for line in reversed(lines):
        if _EXCEPTION_LINE.match(line):
            return line[:200]
    return " ".join(reason.split())[:200]


class ScreeningWrapper(StrategyWrapper):
    """A wrapper that owns a ``ReplyScreen`` and tells it the weights sent in each round."""

    ROLE = "screening replies"

    def __init__(self, inner: Strategy, screen: ReplyScreen) -> None:
        super().__init__(inner)
        self.screen = screen

    def summary(self) -> None:
        log.info("%s %s before %s", type(self).__name__, self.ROLE, type(self.inner).__name__)
        self.inner.summary()

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        self.screen.remember_sent(server_round, arrays)
        messages = list(self.inner.configure_train(server_round, arrays, config, grid))
        self.screen.remember_cohort(server_round, messages, grid)  # the outermost wrapper's call sets it last
        return messages


class ReplyGate(ScreeningWrapper):
    """Outermost strategy: only screened replies reach the wrapped stack (Flower DP wrappers included)."""

    def __init__(self, inner: Strategy, screen: ReplyScreen) -> None:
        super().__init__(inner, screen)
        self.lost_rounds: list[int] = []

    def aggregate_train(self, server_round: int,
                        replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        valid = self.screen.screen(server_round, replies)
        if not valid:
            self.lose(server_round, f"no valid reply to aggregate ({len(replies)} received)", replies, 0)
            return None, None
        arrays, metrics = self.inner.aggregate_train(server_round, [m for m, _ in valid])
        if arrays is None:
            self.lose(server_round, "the wrapped strategy aggregated nothing", replies, len(valid))
        return arrays, metrics

    def lose(self, server_round: int, reason: str, replies: list[Message], num_valid: int) -> None:
        failed = sum(1 for m in replies if m.has_error())
        log.error("round %d lost: %s", server_round, reason)
        self.lost_rounds.append(server_round)
        if self.screen.folder is not None:
            self.screen.folder.append(LostRoundRow(round=server_round, reason=reason, replies=len(replies),
                                                   failed=failed, rejected=len(replies) - failed - num_valid,
                                                   time=time.time()))
