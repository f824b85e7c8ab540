"""Defenses: one module per ``[defense.<table>]`` mechanism, each reached only through its object.

=====================  =====================================================================================
module                 mechanism (its schema, its ``Defense`` object, its own functions)
=====================  =====================================================================================
``dp_sgd``             Opacus DP-SGD, a training hook; clients report epsilon
``central_dp``         Flower's central-DP fixed-clipping wrappers (+ ``fixedclipping_mod``)
``local_dp``           Flower's ``LocalDpMod``; the server composes its epsilon
``update``             clip / noise / top-k / random-k / quantise the update (pure functions)
``training``           label smoothing / mixup loss, a training hook
``secagg``             Flower's SecAgg+ (plan, load checks, ``AGGREGATE_CLIENT``)
``custom``             your Flower client mods and strategy wrappers (``module:attr``)
``base``               what a defense object is (``Defense``, ``Applier``, ``DefenseRecord``, ``RoundRelease``)
``registry``           ``BUILTIN`` (one line per defense), ``register``, every question asked of the defenses
=====================  =====================================================================================

Adding a defense: a module with its frozen schema and a ``Defense`` subclass, and one line in
``registry.BUILTIN`` (or ``registry.register(...)`` from any code). Nothing is imported here: each module imports
what it needs, and loading a config stays free of torch (the mechanisms import it where they run).
"""

from fedsim.core.defense import registry  # noqa: E402,F401 - fills base.REGISTERED before any defense is asked
