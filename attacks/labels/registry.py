"""The registry of label restoration methods: name -> ``AttackMethod`` (``fedsim.attacks.records``) whose ``run`` is
``fn(model, gradients, num_samples, **options) -> LabelRestoration``.

Add a method with ``register_label_method(AttackMethod(name, "label", paper, summary, fn, needs=...))``, from
any module (the test ``tests/test_attack_records.py`` does it from test code alone).
"""

from __future__ import annotations

import inspect
from typing import Callable

from fedsim.attacks.labels.aux import restore_aux_nnls
from fedsim.attacks.labels.geng import restore_geng, restore_geng_bias
from fedsim.attacks.labels.gi import restore_gi, restore_gi_ext
from fedsim.attacks.labels.idlg import restore_idlg
from fedsim.attacks.labels.ilrg import restore_ilrg, restore_ilrg_prior
from fedsim.attacks.labels.llg import restore_llg, restore_llg_plus
from fedsim.attacks.labels.refine import restore_ilrg_refine
from fedsim.attacks.labels.rlg import restore_rlg
from fedsim.attacks.labels.rlu import restore_rlu
from fedsim.attacks.labels.soft import restore_soft
from fedsim.attacks.records import AttackMethod, Registry


def _summary(fn: Callable) -> str:
    """The first paragraph of the function's docstring (else its module's) on one line."""
    doc = fn.__doc__ or inspect.getmodule(fn).__doc__ or ""
    return " ".join(doc.strip().split("\n\n")[0].split())


def _label(name: str, fn: Callable, paper: str, needs: tuple[str, ...] = ()) -> AttackMethod:
    return AttackMethod(name, "label", paper, _summary(fn), fn, needs=needs)


LABEL_METHODS = Registry("attack.label_methods", ("label",), [
    _label("idlg", restore_idlg, "Zhao et al. 2020 (+ iLRG's batch extension)"),
    _label("gi", restore_gi, "Yin et al. 2021, top-K most negative row minima"),
    _label("gi-ext", restore_gi_ext, "iLRG Sec. 4.2 extension (Ma et al. 2023): all negative row minima"),
    _label("rlg", restore_rlg, "Dang et al. 2021, SVD + LP"),
    _label("llg", restore_llg, "Wainakh et al. 2022, LLG"),
    _label("llg+", restore_llg_plus, "Wainakh et al. 2022, LLG+/LLG* (dummy / auxiliary inputs)"),
    _label("geng", restore_geng, "Geng et al. 2021, eq. 16 as published (weight-gradient row sums)"),
    _label("geng-bias", restore_geng_bias, "fedsim's variant of Geng et al. 2021 eq. 16: exact bias identity, "
                                           "see geng.py"),
    _label("ilrg", restore_ilrg, "Ma et al. ICLR 2023"),
    _label("ilrg-prior", restore_ilrg_prior, "iLRG (Ma et al. 2023) with a presence prior from gi-ext / rlg"),
    _label("ilrg-refine", restore_ilrg_refine, "fedsim's own, on iLRG's equations (Ma et al. 2023): see refine.py"),
    _label("soft", restore_soft, "Wang, Liang, He ICLR 2024 (label smoothing / mixup)"),
    # the live pipeline passes it the public split (model space) and the client's lr, local_steps, local_batch_size
    _label("aux-nnls", restore_aux_nnls, "fedsim's own (2026): public-split class statistics + NNLS (trained "
                                         "models), aux.py", needs=("public split", "client schedule")),
    _label("rlu", restore_rlu, "Chen & Vikalo ICML 2024 (RLU), rlu.py", needs=("public split", "client schedule")),
])


def register_label_method(record: AttackMethod) -> AttackMethod:
    """Register a label method defined anywhere (kind ``label``); its name is then valid in
    ``attack.label_methods`` and it runs in the live pipeline, replay and sweeps like the built-in ones."""
    return LABEL_METHODS.register(record)
