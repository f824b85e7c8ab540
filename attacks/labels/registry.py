"""The registry of label restoration methods: name -> callable(model, gradients, batch_size, **options)."""

from __future__ import annotations

from typing import Callable

from attacks.labels.aux import restore_aux_nnls
from attacks.labels.geng import restore_geng, restore_geng_bias
from attacks.labels.gi import restore_gi, restore_gi_ext
from attacks.labels.idlg import restore_idlg
from attacks.labels.ilrg import restore_ilrg, restore_ilrg_prior
from attacks.labels.llg import restore_llg, restore_llg_plus
from attacks.labels.refine import restore_ilrg_refine
from attacks.labels.rlg import restore_rlg
from attacks.labels.soft import restore_soft
from fedsim.types import LabelRestoration

LABEL_METHODS: dict[str, Callable[..., LabelRestoration]] = {
    "idlg": restore_idlg,            # Zhao et al. 2020 (+ iLRG's batch extension)
    "gi": restore_gi,                # Yin et al. 2021, top-K most negative row minima
    "gi-ext": restore_gi_ext,        # iLRG Sec. 4.2 extension: all negative row minima
    "rlg": restore_rlg,              # Dang et al. 2021, SVD + LP
    "llg": restore_llg,              # Wainakh et al. 2022, LLG
    "llg+": restore_llg_plus,        # Wainakh et al. 2022, LLG+/LLG* (dummy / auxiliary inputs)
    "geng": restore_geng,            # Geng et al. 2021, eq. 16 as published (weight-gradient row sums)
    "geng-bias": restore_geng_bias,  # fedsim's variant of Geng eq. 16: exact bias identity, see geng.py
    "ilrg": restore_ilrg,            # Ma et al. ICLR 2023
    "ilrg-prior": restore_ilrg_prior,  # iLRG with a presence prior from gi-ext / rlg
    "ilrg-refine": restore_ilrg_refine,  # fedsim's own: see refine.py
    "soft": restore_soft,            # Wang, Liang, He ICLR 2024 (label smoothing / mixup)
    "aux-nnls": restore_aux_nnls,    # fedsim's own: public-split class statistics + NNLS (trained models), aux.py
}

# methods that need the server's public labelled split (option ``aux=(x, y)``, model space); the live pipeline
# also passes them the client's ``lr``, ``local_steps`` and ``local_batch_size``
NEEDS_PUBLIC: frozenset[str] = frozenset({"aux-nnls"})
