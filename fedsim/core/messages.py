"""Keys of the Flower messages that the ClientApp and the ServerApp share (as Flower keeps its own constants).

Core module: plain strings, no ``flwr`` import. The record names follow Flower's Message-API strategies
(``FedAvg`` sends ``arrays`` + ``config`` and weights replies by ``metrics["num-examples"]``).
"""

from __future__ import annotations

# ---- record names of a train message and its reply -------------------------------------------------------
ARRAYS = "arrays"          # ArrayRecord: global weights (to the client) / trained weights (to the server)
CONFIG = "config"          # ConfigRecord: the train config below (to the client)
METRICS = "metrics"        # MetricRecord: averaged by FedAvg (only numbers; no identifiers here)
META = "meta"              # ConfigRecord: identifiers kept out of the averaged metrics

# ---- train config (server -> client) ---------------------------------------------------------------------
SERVER_ROUND = "server-round"      # added by Flower's strategies to every train config
ALGORITHM = "algorithm"
LR = "lr"
LOCAL_EPOCHS = "local-epochs"
BATCH_SIZE = "batch-size"
MAX_LOCAL_STEPS = "max-local-steps"
SEED = "seed"
RESOLVED = "resolved"              # the fingerprint of the run config the server checked (fedsim.core.resolved)

# ---- reply metrics and identifiers (client -> server) ----------------------------------------------------
NUM_EXAMPLES = "num-examples"      # FedAvg's weighting key; what a client releases (see fedsim.core.defense.dp_sgd)
UNIT_WEIGHT = "unit-weight"        # server-stamped weight 1 of every reply under central DP (equal-weight FedAvg)
TRAIN_LOSS = "train_loss"
PARTITION_ID = "partition-id"      # also the node-config key of a SuperNode
NUM_PARTITIONS = "num-partitions"  # node-config key
LOCAL_STEPS = "local-steps"
EPSILON = "epsilon"                # DP-SGD: epsilon over all rounds so far
EPSILON_ROUND = "epsilon_round"    # DP-SGD: epsilon of this round's steps
DP_SAMPLE_RATE = "dp_sample_rate"
DP_STEPS = "dp_steps"


# ---- SecAgg+ (legacy FitIns / FitRes layout) -------------------------------------------------------------
def secagg_vector_names(state: dict) -> list[str]:
    """Names, in state-dict order, of the tensors a SecAgg+ client masks and the server unmasks: the floating-point
    ones (integer buffers such as BatchNorm's ``num_batches_tracked`` would not survive [-c, c] quantisation)."""
    return [k for k, v in state.items() if v.is_floating_point()]
