"""The honest-but-curious strategy: aggregates exactly like the wrapped strategy, but intercepts every reply.

Modelled on Flower's ``DifferentialPrivacyServerSideFixedClipping`` wrapper: ``configure_train`` remembers
the weights sent in each round, ``aggregate_train`` turns each valid reply into a ``ClientUpdate``, hands it to
the sinks (capture store, attack scheduler) and then lets the wrapped strategy aggregate the accepted replies.
Screening (structure, example-count and norm bounds, rejections) is ``fedsim.server.validation``'s job: in the live
stack a ``ReplyGate`` does it outermost, before any Flower wrapper; standalone, this strategy screens itself.
A reply that a wrapper left invalid is a rejection row (not aggregated); a sink that fails is a ``capture_error``
row (``fedsim.server.sinks.deliver``) and the round goes on.
"""

from __future__ import annotations

import logging
from typing import Iterable

from flwr.app import ArrayRecord, Message, MetricRecord
from flwr.serverapp.strategy import Strategy

from fedsim.core.runfolder import RunFolder
from fedsim.core.types import ClientUpdate, InvalidUpdateError
from fedsim.server.sinks import UpdateSink, deliver
from fedsim.server.validation import Bounds, ReplyScreen, ScreeningWrapper, TrainSettings  # TrainSettings re-exported

log = logging.getLogger("fedsim.server")

class CuriousStrategy(ScreeningWrapper):
    """Wrap a Message-API strategy; aggregate honestly, capture every accepted client update."""

    ROLE = "capturing every reply"

    def __init__(self, inner: Strategy, *, run_id: str, parameter_names: list[str], settings: TrainSettings,
                 sinks: Iterable[UpdateSink] = (), run_folder: RunFolder | None = None, bounds: Bounds = Bounds(),
                 screen: ReplyScreen | None = None) -> None:
        super().__init__(inner, screen or ReplyScreen(parameter_names, settings, run_id, run_folder, bounds))
        self.run_id = run_id
        self.parameter_names = list(parameter_names)
        self.settings = settings
        self.sinks = list(sinks)
        self.run_folder = run_folder
        self.prescreened = screen is not None
        self.accepted: list[ClientUpdate] = []  # of the latest round only

    # ---- interception -----------------------------------------------------------------------------------
    def aggregate_train(self, server_round: int,
                        replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Hand every valid reply's update to the sinks, then aggregate them with the wrapped strategy.

        Standalone, this screens (and rejects) the replies itself; under a ``ReplyGate`` (``prescreened``) the
        replies were screened before any wrapper saw them and are only converted here (after a central-DP
        wrapper clipped them, which is what such a server sees).
        """
        replies = list(replies)
        if self.prescreened:
            valid = []
            for msg in (m for m in replies if not m.has_error()):
                try:
                    valid.append((msg, self.screen.to_update(server_round, msg)))
                except (InvalidUpdateError, KeyError, TypeError, ValueError) as exc:  # a wrapper broke it
                    self.screen.reject(server_round, msg, f"invalid after the server-side wrappers: {exc}")
            valid.sort(key=lambda mu: mu[1].client_id)
        else:
            valid = self.screen.screen(server_round, replies)
        self.accepted = [u for _, u in valid]
        for update in self.accepted:  # a failing sink is a capture_error row; the round goes on
            deliver(update, self.sinks, self.run_folder or self.screen.folder)
        if not valid:
            log.warning("round %d: no valid replies to aggregate", server_round)
            return None, None
        return self.inner.aggregate_train(server_round, [m for m, _ in valid])
