"""fedsim's core floor: config, data, models, training, defenses, typed records and the run folder.

Shared by the Flower shells (``fedsim.clients``, ``fedsim.server``), the attacks (``fedsim.attacks``), the
evaluation layer and the lab shell; it imports none of them and never ``flwr`` (``tests/test_architecture.py``).
This ``__init__`` imports nothing, so ``import fedsim.core.errors`` costs one module.
"""
