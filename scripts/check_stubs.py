"""Check that fastrnn/_core.pyi matches the compiled module fastrnn._core.

Runs ``mypy.stubtest`` on ``fastrnn._core``: every name defined in the stub must exist at
run time and every public name of the compiled module must be in the stub, with the same
parameter names, order, kinds and defaults.

The stub is checked on its own: it is copied with an empty ``fastrnn/__init__.pyi`` into a
temporary directory that mypy searches first, so type errors elsewhere in the package
(checked by ``mypy fastrnn``) do not mask a stub that has fallen behind the kernels.  The
compiled module itself is imported from wherever Python finds ``fastrnn`` (an installed
or editable package, or the source tree given on ``PYTHONPATH``).

Usage: ``python scripts/check_stubs.py`` (exit status 0 when the stub matches).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# Names the compiled module has that are no part of its interface.
ALLOWLIST = [
    "fastrnn._core.__test__",  # the doctest dictionary Cython adds to every module
]


def main() -> int:
    repo = Path(__file__).resolve().parent.parent
    stub = repo / "fastrnn" / "_core.pyi"
    env = dict(os.environ)
    if importlib.util.find_spec("fastrnn") is None:
        # not installed: use the source tree (its extension must be built in place)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(repo), env.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory() as tmp:
        pkg = Path(tmp, "stubs", "fastrnn")
        pkg.mkdir(parents=True)
        shutil.copy(stub, pkg / "_core.pyi")
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
            "fastrnn._core",
            "--mypy-config-file",
            str(config),
            "--allowlist",
            str(allowlist),
        ]
        # run from the temporary directory, so mypy cannot pick up the source package
        done = subprocess.run(cmd, cwd=tmp, env=env, check=False)
    if done.returncode == 0:
        print(f"{stub.relative_to(repo)} matches the compiled fastrnn._core")
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
