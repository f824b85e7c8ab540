"""Attacks of the honest-but-curious server: fake gradients, label restoration, gradient inversion.

Pure PyTorch, no Flower import: everything here runs offline on saved captures. Every attack runs on the device
and in the dtype of the model it is handed (build the model on ``fedsim.core.device.resolve_device(run.device)``);
gradients, labels and statistics are moved there, random starts come from seeded CPU generators.

Every label, inversion and generative method is one record (``fedsim.attacks.records.AttackMethod``: name, kind,
paper, summary, needs, ``applies``, run) in its family's registry (``fedsim.attacks.labels.LABEL_METHODS``,
``fedsim.attacks.inversion.INVERSION_METHODS``); ``fedsim.attacks.pipeline`` runs the configured ones on one update.

Three different things were all called "prior" here; they are named apart:
* image **regularisers** (TV, clip, scale, BN statistics, ...): ``fedsim.attacks.inversion.regularizers``;
* the learned **generative prior** (a VAE decoder trained on public data, GGL / GIAS): ``fedsim.attacks.generative``;
* the label **presence mask** that ``ilrg-prior`` takes from a presence method: ``fedsim.attacks.labels``.
"""
