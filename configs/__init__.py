"""fedsim's presets, shipped as package data: this folder installs as ``fedsim.presets`` (``pyproject.toml``:
``package-dir`` and ``package-data``), read through ``importlib.resources`` by ``fedsim.lab.presets``.

``fedsim list presets`` names them, ``fedsim run <name>`` / ``fedsim check <name>`` take a name as well as a path,
``fedsim init DIR`` copies them out for editing. This file holds no code: it only makes the folder a package, the
one form setuptools' editable install maps onto a folder of data files.
"""
