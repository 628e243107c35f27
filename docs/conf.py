"""Sphinx configuration of the fastrnn documentation.

Sphinx with autodoc and napoleon: autodoc imports the compiled package as installed, so the
reference shows exactly what users get; napoleon reads both the numpy-style sections
(``Parameters``, ``Returns``, ``Examples``) and the Google-style ``Args:`` blocks the
optimizers use; ``sphinx-build -W`` turns every broken reference or malformed docstring
into an error.

Build: ``sphinx-build -W -b html docs docs/_build/html``.
"""

from __future__ import annotations

import fastrnn

project = "fastrnn"
author = "the fastrnn developers"
copyright = "the fastrnn developers"
version = release = fastrnn.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "sphinx.ext.napoleon",
]

exclude_patterns = ["_build"]
html_theme = "alabaster"
html_static_path = ["_static"]
html_theme_options = {"description": "recurrent networks for CPU-only Python"}

autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}
# the optional back ends are imported inside functions, never at import time; mocked here
# so the reference builds without them
# (and the engines of the modules of "Past one machine", which import theirs at the top)
autodoc_mock_imports = ["torch", "onnx", "onnxruntime", "dask", "distributed", "mpi4py", "optuna"]

napoleon_google_docstring = True
napoleon_numpy_docstring = True
napoleon_use_rtype = False

nitpicky = False
