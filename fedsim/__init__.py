"""fedsim core: config, data, partitions, models, local training, records, metrics and CLI.

This package never imports ``flwr``: it is shared by the Flower apps (``clients/``, ``server/``)
and by the offline attack tooling (``attacks/``).
"""

__version__ = "0.1.0"
