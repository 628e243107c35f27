"""The examples in the docstrings run, and every public name has one.

Every public module of the package (no leading underscore) is imported and its doctests
run; a module whose optional dependency (torch, onnx, matplotlib, ...) is missing is
skipped.
"""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import inspect
import pkgutil
import re
from pathlib import Path

import numpy as np
import pytest

import fastrnn

# Only the entry point of ``python -m fastrnn``: importing it runs the command.
EXCLUDED = {"fastrnn.__main__"}
# Optional dependencies (the extras): an example that imports one that is missing is skipped.
OPTIONAL = (
    "torch",
    "onnx",
    "onnxruntime",
    "matplotlib",
    "dask",
    "distributed",
    "mpi4py",
    "optuna",
)
MISSING = {name for name in OPTIONAL if importlib.util.find_spec(name) is None}


def _needs_missing(test: doctest.DocTest) -> bool:
    for example in test.examples:
        words = example.source.replace(",", " ").split()
        for i, word in enumerate(words[:-1]):
            if word in ("import", "from") and words[i + 1].split(".")[0] in MISSING:
                return True
    return False


def _public_modules() -> list[str]:
    names = ["fastrnn"]
    for info in pkgutil.walk_packages(fastrnn.__path__, prefix="fastrnn."):
        if any(part.startswith("_") for part in info.name.split(".")):
            continue
        if info.name not in EXCLUDED:
            names.append(info.name)
    return sorted(names)


MODULES = _public_modules()


def _import(name: str):
    try:
        return importlib.import_module(name)
    except ImportError as err:  # an optional dependency that is not installed
        pytest.skip(f"{name} needs {err.name}, which is not installed")


class _Runner(doctest.DocTestRunner):
    """Notes an example that fails because an optional dependency is missing."""

    needs_missing = False

    def report_unexpected_exception(self, out, test, example, exc_info):
        err = exc_info[1]
        while err is not None:  # the error, or the one it was raised from
            if isinstance(err, ImportError) and (
                (err.name or "").split(".")[0] in MISSING
                or any(re.search(rf"\b{name}\b", str(err)) for name in MISSING)
            ):
                self.needs_missing = True
            err = err.__cause__ or err.__context__
        super().report_unexpected_exception(out, test, example, exc_info)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name, tmp_path, monkeypatch):
    module = _import(name)
    monkeypatch.chdir(tmp_path)  # an example that writes a file writes it here
    finder = doctest.DocTestFinder(exclude_empty=True)
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    failed = attempted = 0
    with np.printoptions(precision=4, suppress=True, legacy=False):
        for test in finder.find(module, name, globs={"np": np, "fastrnn": fastrnn}):
            if not test.examples or _needs_missing(test):
                continue
            runner = _Runner(optionflags=flags)
            result = runner.run(test)
            if not runner.needs_missing:  # else: skipped, its optional dependency is missing
                failed += result.failed
                attempted += result.attempted
    assert failed == 0, f"{failed} of {attempted} examples failed"


def _public_names():
    """``(module, name)`` of every function and class exported by a public module."""
    seen = set()
    for modname in MODULES:
        try:
            module = importlib.import_module(modname)
        except ImportError:
            continue
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)) or id(obj) in seen:
                continue
            seen.add(id(obj))
            yield pytest.param(obj, id=f"{obj.__module__}.{obj.__qualname__}")


@pytest.mark.parametrize("obj", list(_public_names()))
def test_public_name_has_an_example(obj):
    doc = inspect.getdoc(obj)
    assert doc, f"{obj.__module__}.{obj.__qualname__} has no docstring"
    assert ">>>" in doc, f"{obj.__module__}.{obj.__qualname__} has no example"


DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGES = sorted(DOCS.rglob("*.rst")) if DOCS.is_dir() else []


@pytest.mark.skipif(not PAGES, reason="the docs/ directory is not beside the tests")
@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(DOCS)))
def test_docs_page_examples_run(page, tmp_path, monkeypatch):
    text = page.read_text(encoding="utf-8")
    examples = doctest.DocTestParser().get_doctest(text, {}, page.name, str(page), 0)
    if _needs_missing(examples):
        pytest.skip(f"{page.name} imports one of {sorted(MISSING)}, which is not installed")
    monkeypatch.chdir(tmp_path)
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    result = doctest.testfile(
        str(page),
        module_relative=False,
        optionflags=flags,
        globs={"np": np, "fastrnn": fastrnn},
        report=True,
    )
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed"


# one page per public module of the package (a subpackage's page documents the names it
# re-exports), each listed in the reference's index
API_PAGES = {f"fastrnn.{name.split('.')[1]}" for name in MODULES if name.count(".") >= 1}


@pytest.mark.skipif(not PAGES, reason="the docs/ directory is not beside the tests")
@pytest.mark.parametrize("module", sorted(API_PAGES | {"fastrnn"}))
def test_public_module_has_a_reference_page(module):
    stem = module.split(".")[-1]
    page = DOCS / "api" / f"{stem}.rst"
    assert page.is_file(), f"{module} has no page docs/api/{stem}.rst"
    assert f".. automodule:: {module}\n" in page.read_text(), f"{page} documents another module"
    index = (DOCS / "api.rst").read_text()
    assert f"   api/{stem}\n" in index, f"docs/api.rst does not list api/{stem}"
