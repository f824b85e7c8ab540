"""Scoring metrics: label restoration accuracy (labels.py) and image similarity after alignment (images.py)."""
