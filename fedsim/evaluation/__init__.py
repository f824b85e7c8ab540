"""Floor 3, the evaluation layer: attack a capture and score it against ground truth.

The only reader of ground truth (the audit store and, under secure aggregation, the cohort's merged truth).
Attacks (floor 2) never import this package.
"""
