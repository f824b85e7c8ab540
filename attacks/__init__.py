"""Attacks of the honest-but-curious server: fake gradients, label restoration, gradient inversion.

Pure PyTorch, no Flower import: everything here runs offline on saved captures.
"""
