"""Check that the stubs of the compiled modules match them: fastrnn/_X.pyi for each
fastrnn/_X.pyx (the kernels, the BLAS layer, the one-step entry, the GEMM floor).

Runs ``mypy.stubtest`` on every compiled module: every name defined in a stub must exist
at run time and every public name of the compiled module must be in its stub, with the
same parameter names, order, kinds and defaults.  A .pyx without a .pyi is an error.

The stubs are checked on their own: they are copied with an empty ``fastrnn/__init__.pyi``
into a temporary directory that mypy searches first, so type errors elsewhere in the
package (checked by ``mypy fastrnn``) do not mask a stub that has fallen behind the
kernels.  The compiled modules themselves are imported from wherever Python finds
``fastrnn`` (an installed or editable package, or the source tree given on ``PYTHONPATH``).

Usage: ``python scripts/check_stubs.py`` (exit status 0 when every stub matches).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# Names the compiled modules have that are no part of their interface.
ALLOWLIST = [
    "fastrnn\\._[a-z]+\\.__test__",  # the doctest dictionary Cython adds to every module
    "fastrnn\\._[a-z]+\\.__pyx_capi__",  # the C functions a module shares (its .pxd)
]


def main() -> int:
    repo = Path(__file__).resolve().parent.parent
    sources = sorted((repo / "fastrnn").glob("*.pyx"))
    stubs = [pyx.with_suffix(".pyi") for pyx in sources]
    missing = [stub.name for stub in stubs if not stub.exists()]
    if missing:
        print(f"no stub for the compiled module(s): {', '.join(missing)}", file=sys.stderr)
        return 1
    modules = [f"fastrnn.{pyx.stem}" for pyx in sources]
    env = dict(os.environ)
    if importlib.util.find_spec("fastrnn") is None:
        # not installed: use the source tree (its extension must be built in place)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(repo), env.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory() as tmp:
        pkg = Path(tmp, "stubs", "fastrnn")
        pkg.mkdir(parents=True)
        for stub in stubs:
            shutil.copy(stub, pkg / stub.name)
        (pkg / "__init__.pyi").write_text("")
        allowlist = Path(tmp, "allowlist.txt")
        allowlist.write_text("\n".join(ALLOWLIST) + "\n")
        config = Path(tmp, "mypy.ini")
        config.write_text("[mypy]\n")
        env["MYPYPATH"] = str(pkg.parent)
        cmd = [
            sys.executable,
            "-m",
            "mypy.stubtest",
            *modules,
            "--mypy-config-file",
            str(config),
            "--allowlist",
            str(allowlist),
        ]
        # run from the temporary directory, so mypy cannot pick up the source package
        done = subprocess.run(cmd, cwd=tmp, env=env, check=False)
    if done.returncode == 0:
        print(f"the stubs match the compiled modules: {', '.join(modules)}")
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
