"""Floor 5, the lab shell: CLI, runners (simulation, deploy-local), sweeps, replay, report and plots.

Drives Flower only as processes (``flwr run``, SuperLink, SuperNodes); never imports ``flwr``.
"""
