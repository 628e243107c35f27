"""Build the compiled core: cythonize fastrnn/_core.pyx.

Compiler directives live here and nowhere else.  Set FASTRNN_DEBUG=1 to build with
bounds checks and wraparound on (slow; for hunting memory errors), FASTRNN_COVERAGE=1 to
build with line tracing for coverage of the Cython code (slow; opt-in, see CONTRIBUTING.md).
"""

import os

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("FASTRNN_DEBUG", "") not in ("", "0")
COVERAGE = os.environ.get("FASTRNN_COVERAGE", "") not in ("", "0")

directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": True,
    "nonecheck": False,
    "embedsignature": True,
    "linetrace": COVERAGE,
}

compile_args = ["-O0", "-g"] if DEBUG else ["-O3", "-g0", "-fno-math-errno", "-fno-trapping-math"]
compile_args.append("-fopenmp")     # the time loop runs on parts of the batch in parallel

extensions = [
    Extension(
        "fastrnn._core",
        ["fastrnn/_core.pyx"],
        include_dirs=[numpy.get_include(), "fastrnn"],
        depends=["fastrnn/_cellmath.h", "fastrnn/_panel.h"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
        + ([("CYTHON_TRACE_NOGIL", "1")] if COVERAGE else []),
        extra_compile_args=compile_args,
        extra_link_args=["-fopenmp"],
    )
]

setup(ext_modules=cythonize(extensions, compiler_directives=directives))
