"""Flower ServerApp of fedsim: the honest-but-curious server (capture, attack, score)."""
