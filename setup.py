"""Build the compiled modules of fastrnn: one extension per .pyx file.

  fastrnn/_blas.pyx   the typed BLAS layer (+ the panel product's dispatch), threads, sizes
  fastrnn/_core.pyx   the recurrent kernels: forward and BPTT of RNN, LSTM and GRU
  fastrnn/_step.pyx   the one-step entry (cells, streaming)
  fastrnn/_floor.pyx  the GEMM floor, a benchmark tool
  fastrnn/_lowp.pyx   quantized (int8) inference: the int8 product and its time loop

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
# No -march: a wheel runs on any x86-64 CPU; the kernels carry AVX-512, AVX2 and baseline
# clones (target_clones in _cellmath.h, _panel.h) and pick one when the module loads.

# what each module compiles in: the headers, and the .pxd files it cimports
HEADERS = {
    "_blas": ["fastrnn/_blas.pxd", "fastrnn/_panel.h", "fastrnn/_adam.h", "fastrnn/_b16.pxd", "fastrnn/_b16.h",
              "fastrnn/_isa.h"],
    "_core": ["fastrnn/_core.pxd", "fastrnn/_blas.pxd", "fastrnn/_cellmath.pxd",
              "fastrnn/_cellmath.h", "fastrnn/_panel.h", "fastrnn/_b16.pxd", "fastrnn/_b16.h",
              "fastrnn/_isa.h", "fastrnn/_barrier.h"],
    "_step": ["fastrnn/_blas.pxd", "fastrnn/_cellmath.pxd", "fastrnn/_cellmath.h",
              "fastrnn/_panel.h"],
    "_floor": ["fastrnn/_core.pxd", "fastrnn/_blas.pxd", "fastrnn/_cellmath.pxd",
               "fastrnn/_cellmath.h", "fastrnn/_panel.h"],
    "_lowp": ["fastrnn/_q8.h", "fastrnn/_isa.h", "fastrnn/_blas.pxd",
              "fastrnn/_cellmath.pxd", "fastrnn/_cellmath.h", "fastrnn/_panel.h"],
}

extensions = [
    Extension(
        f"fastrnn.{name}",
        [f"fastrnn/{name}.pyx"],
        include_dirs=[numpy.get_include(), "fastrnn"],
        depends=depends,
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
        + ([("CYTHON_TRACE_NOGIL", "1")] if COVERAGE else []),
        extra_compile_args=compile_args,
        extra_link_args=["-fopenmp"],
    )
    for name, depends in HEADERS.items()
]

setup(ext_modules=cythonize(extensions, compiler_directives=directives))
