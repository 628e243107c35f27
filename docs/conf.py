"""Sphinx configuration of the fastrnn documentation.

Sphinx with autodoc and napoleon: autodoc imports the compiled package as installed, so the
reference shows exactly what users get; napoleon reads both the numpy-style sections
(``Parameters``, ``Returns``, ``Examples``) and the Google-style ``Args:`` blocks the
optimizers use; autosummary makes the tables of modules on the reference's index page (one
page per public module, ``docs/api/``); the equations are rendered by the copy of MathJax
in ``_static/mathjax`` (no network needed to read the site); ``sphinx-build -W`` turns
every broken reference or malformed docstring into an error.

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
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "sphinx.ext.napoleon",
]

exclude_patterns = ["_build"]
html_theme = "alabaster"
html_static_path = ["_static"]
html_theme_options = {
    "description": "recurrent networks for CPU-only Python",
    "page_width": "1160px",
    "sidebar_width": "270px",
}
# a page's table of contents names a method by itself (``step``, not ``Optimizer.step``)
toc_object_entries_show_parents = "hide"
# relative to _static: the vendored MathJax 3 (its README.txt says which files, from where)
mathjax_path = "mathjax/tex-chtml-full.js"

# the sidebar: the site's navigation, then this page's sections and objects
html_sidebars = {
    "**": ["about.html", "searchfield.html", "navigation.html", "localtoc.html", "relations.html"]
}

autodoc_member_order = "bysource"
# defaults as written in the source (``dtype=numpy.float32``, not ``<class 'numpy.float32'>``)
autodoc_preserve_defaults = True
autodoc_default_options = {"members": True, "show-inheritance": True}
# the optional back ends are imported inside functions, never at import time; mocked here
# so the reference builds without them
# (and the engines of the modules of "Past one machine", which import theirs at the top)
autodoc_mock_imports = ["torch", "onnx", "onnxruntime", "dask", "distributed", "mpi4py", "optuna"]

napoleon_google_docstring = True
napoleon_numpy_docstring = True
napoleon_use_rtype = False

nitpicky = False


def _public_bases(app, name, obj, options, bases):
    """Show a class's public bases: a private base (``_RNNBase``) is replaced by its own."""
    public = []
    todo = list(bases)
    while todo:
        base = todo.pop(0)
        if getattr(base, "__name__", "").startswith("_"):
            todo[:0] = [b for b in base.__bases__ if b is not object]
        elif base not in public:
            public.append(base)
    bases[:] = public


def setup(app):
    app.connect("autodoc-process-bases", _public_bases)
