"""Write the corpus of nasty model files in tests/data/nasty/ (run from anywhere).

    python tests/data/make_nasty.py [OUTDIR]

Every file is small (at most a few tens of kB) and deterministic.  ``MANIFEST.json`` says
what ``fastrnn.load`` / ``fastrnn.load_checkpoint`` must do with each: ``"load"`` (a valid
file, the control), ``"refuse"`` (both raise ``fastrnn.ModelFileError``) or
``"refuse_checkpoint"`` (the model loads; its optimizer section is refused by
``load_checkpoint``).  Files holding a pickle carry a payload that, if it ever ran, would
set the environment variable ``FASTRNN_NASTY_PAYLOAD_RAN`` in the loading process.

What is in it: truncations, flipped bytes, random bytes, plain text, headers claiming huge
or non-finite shapes, architectures far larger than their arrays, object arrays, pickles,
zip bombs (deflate and bzip2), members lying about their size, deeply nested JSON, encrypted
and unknown-compression flags, path-traversal and duplicate member names, malformed
optimizer sections.
"""

import bz2  # noqa: F401  (zipfile's bzip2 support needs it)
import hashlib
import io
import json
import os
import pickle
import struct
import sys
import zipfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DATE = (2020, 1, 1, 0, 0, 0)


class Payload:
    """Unpickling this sets FASTRNN_NASTY_PAYLOAD_RAN: proof that code ran."""

    def __reduce__(self):
        return (exec, ("import os; os.environ['FASTRNN_NASTY_PAYLOAD_RAN'] = '1'",))


def npy(a, allow_pickle=False) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=allow_pickle)
    return buf.getvalue()


def npy_header(shape, descr="<f4", version=(1, 0)) -> bytes:
    buf = io.BytesIO()
    d = {"descr": descr, "fortran_order": False, "shape": tuple(shape)}
    if version == (1, 0):
        np.lib.format.write_array_header_1_0(buf, d)
    else:
        np.lib.format.write_array_header_2_0(buf, d)
    return buf.getvalue()


def text_npy(text) -> bytes:
    raw = text if isinstance(text, bytes) else text.encode()
    return npy(np.frombuffer(raw, np.uint8))


def zip_bytes(members, compress=zipfile.ZIP_STORED) -> bytes:
    """A zip of ``members`` (name -> bytes, or name -> (bytes, compress_type))."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            kind = compress
            if isinstance(data, tuple):
                data, kind = data
            info = zipfile.ZipInfo(name, date_time=DATE)
            info.compress_type = kind
            zf.writestr(info, data)
    return buf.getvalue()


def base_model():
    """A small trained model with an Adam state: the valid file everything starts from."""
    sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
    import fastrnn
    from fastrnn import optim

    model = fastrnn.SequenceModel.build("gru", input_size=2, hidden_size=3, output_size=2,
                                        seed=0, dtype=np.float32)
    opt = optim.Adam(model.parameters(), lr=1e-2)
    rng = np.random.default_rng(0)
    model.fit(rng.standard_normal((4, 3, 2)), rng.integers(0, 2, (4, 3)), epochs=1,
              batch_size=2, optimizer=opt, progress=False, seed=0)
    path = os.path.join(HERE, ".base.tmp.npz")
    fastrnn.save(model, path, opt, extra={"epoch": 0})
    with zipfile.ZipFile(path) as zf:
        members = {i.filename: zf.read(i) for i in zf.infolist()}
    os.unlink(path)
    return members


def header_of(members) -> dict:
    return json.loads(np.load(io.BytesIO(members["__header__.npy"])).tobytes())


def with_header(members, header, raw=None) -> dict:
    text = raw if raw is not None else json.dumps(header).encode()
    return {**members, "__header__.npy": text_npy(text)}


def patch_sizes(data: bytes, name: str, size: int) -> bytes:
    """Make member ``name`` claim an uncompressed size of ``size`` in both its local and
    central headers (a zip that lies about what it holds)."""
    raw = bytearray(data)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        info = zf.getinfo(name)
    struct.pack_into("<I", raw, info.header_offset + 22, size)
    pos = 0
    while True:                          # the central entry of this member
        pos = raw.find(b"PK\x01\x02", pos)
        if pos < 0:
            break
        n = struct.unpack_from("<H", raw, pos + 28)[0]
        if bytes(raw[pos + 46:pos + 46 + n]) == name.encode():
            struct.pack_into("<I", raw, pos + 24, size)
            break
        pos += 4
    return bytes(raw)


def set_flag(data: bytes, name: str, offset: int, value: int, fmt="<H") -> bytes:
    """Set a field of member ``name``'s local and central headers (offsets in the local
    header; the central header's field is 2 bytes further on)."""
    raw = bytearray(data)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        info = zf.getinfo(name)
    struct.pack_into(fmt, raw, info.header_offset + offset, value)
    pos = 0
    while True:
        pos = raw.find(b"PK\x01\x02", pos)
        if pos < 0:
            break
        n = struct.unpack_from("<H", raw, pos + 28)[0]
        if bytes(raw[pos + 46:pos + 46 + n]) == name.encode():
            struct.pack_into(fmt, raw, pos + offset + 2, value)
            break
        pos += 4
    return bytes(raw)


def corpus() -> dict:
    """name -> (bytes, expected outcome)."""
    m = base_model()
    h = header_of(m)
    valid = zip_bytes(m)
    out = {"valid.npz": (valid, "load"),
           "valid_deflated.npz": (zip_bytes(m, zipfile.ZIP_DEFLATED), "load")}
    R = "refuse"

    def hcopy():
        return json.loads(json.dumps(h))

    def entry(hh, name="param/rnn.weight_ih_l0"):
        return hh["arrays"][name]

    # --- not a model file at all
    rng = np.random.default_rng(6)
    out["empty.npz"] = (b"", R)
    out["text.npz"] = (b"these are not the weights you are looking for\n" * 20, R)
    for i in range(3):
        out[f"random_{i}.npz"] = (rng.bytes(int(rng.integers(10, 3000))), R)
    out["zip_magic_then_random.npz"] = (b"PK\x03\x04" + rng.bytes(500), R)
    out["lone_npy.npz"] = (npy(np.arange(5.0)), R)
    out["foreign_npz.npz"] = (zip_bytes({"weights.npy": npy(np.arange(5.0))}), R)
    out["empty_zip.npz"] = (zip_bytes({}), R)
    out["zip_in_zip.npz"] = (zip_bytes({"__header__.npy": valid}), R)

    # --- damaged copies of the valid file
    for keep in (30, 200, len(valid) // 2, len(valid) - 1):
        out[f"truncated_{keep}.npz"] = (valid[:keep], R)
    start = valid.index(b"\x93NUMPY", valid.index(b"param/rnn.weight_hh_l0.npy"))
    for i, pos in enumerate((start + 100, valid.index(b"fastrnn-model") + 3, len(valid) - 10)):
        bad = bytearray(valid)
        bad[pos] ^= 0x20
        out[f"flipped_{i}.npz"] = (bytes(bad), R)

    # --- headers that claim huge or impossible shapes
    hh = hcopy()
    entry(hh)["shape"] = [10 ** 6, 10 ** 6]
    out["header_huge_shape.npz"] = (zip_bytes(with_header(m, hh)), R)
    hh = hcopy()
    entry(hh)["shape"] = [2 ** 32, 2 ** 32]       # wraps to 0 in int64 arithmetic
    out["header_shape_wraps_int64.npz"] = (zip_bytes(with_header(m, hh)), R)
    hh = hcopy()
    entry(hh)["shape"] = [2 ** 70]
    out["header_shape_2pow70.npz"] = (zip_bytes(with_header(m, hh)), R)
    hh = hcopy()
    entry(hh)["shape"] = [1e300]
    text = json.dumps(hh).replace("1e+300", "Infinity").encode()
    out["header_shape_infinity.npz"] = (zip_bytes(with_header(m, None, text)), R)
    hh = hcopy()
    entry(hh)["shape"] = [-1, -16]
    out["header_negative_shape.npz"] = (zip_bytes(with_header(m, hh)), R)
    member = npy_header((10 ** 6, 10 ** 6)) + np.zeros(6, np.float32).tobytes()
    out["npy_claims_huge_shape.npz"] = (zip_bytes({**m, "param/rnn.weight_ih_l0.npy": member}), R)
    member = npy_header((2 ** 44,), "|u1") + b'{"format": "fastrnn-model"}'
    out["header_member_claims_16TB.npz"] = (zip_bytes({"__header__.npy": member}), R)
    hh = hcopy()
    hh["model"]["rnn"]["hidden_size"] = 10 ** 5
    hh["model"]["head"]["in_features"] = 10 ** 5
    out["architecture_huge_hidden.npz"] = (zip_bytes(with_header(m, hh)), R)
    hh = hcopy()
    hh["model"]["rnn"]["num_layers"] = 10 ** 7
    out["architecture_ten_million_layers.npz"] = (zip_bytes(with_header(m, hh)), R)
    hh = hcopy()
    hh["model"]["rnn"]["hidden_size"] = 10 ** 30
    out["architecture_hidden_1e30.npz"] = (zip_bytes(with_header(m, hh)), R)
    hh = hcopy()
    hh["model"]["dtype"] = "float16"
    out["architecture_float16.npz"] = (zip_bytes(with_header(m, hh)), R)

    # --- object arrays and pickles
    evil = np.array([Payload()], dtype=object)
    out["pickle_renamed.npz"] = (pickle.dumps(Payload()), R)
    out["object_header.npz"] = (zip_bytes({**m, "__header__.npy": npy(evil, True)}), R)
    hh = hcopy()
    entry(hh, "param/head.readout.bias")["dtype"] = "|O"
    out["object_param_declared.npz"] = (
        zip_bytes({**with_header(m, hh), "param/head.readout.bias.npy": npy(evil, True)}), R)
    hh = hcopy()
    entry(hh, "param/head.readout.bias")["shape"] = [1]
    out["object_param_as_float.npz"] = (
        zip_bytes({**with_header(m, hh), "param/head.readout.bias.npy": npy(evil, True)}), R)
    out["object_optimizer_state.npz"] = (
        zip_bytes({**m, "optim/0/exp_avg.npy": npy(evil, True)}), R)
    hh = hcopy()
    entry(hh, "param/head.readout.bias")["dtype"] = "V8"
    out["void_dtype.npz"] = (zip_bytes(with_header(m, hh)), R)

    # --- zip bombs and members that lie about their size
    bomb = b" " * (20 << 20)                       # 20 MB of spaces: about 20 kB deflated
    out["bomb_header_deflate.npz"] = (
        zip_bytes({"__header__.npy": (text_npy(b"{" + bomb + b"}"), zipfile.ZIP_DEFLATED)}), R)
    zeros = npy(np.zeros(3 << 20, np.float32))      # 12 MB of zeros for a 6-value array
    out["bomb_param_deflate.npz"] = (
        zip_bytes({**m, "param/rnn.weight_ih_l0.npy": (zeros, zipfile.ZIP_DEFLATED)}), R)
    out["bomb_param_bzip2.npz"] = (
        zip_bytes({**m, "param/rnn.weight_ih_l0.npy": (zeros, zipfile.ZIP_BZIP2)}), R)
    lying = zip_bytes({**m, "param/rnn.weight_ih_l0.npy": (zeros, zipfile.ZIP_DEFLATED)})
    out["bomb_param_lies_about_size.npz"] = (
        patch_sizes(lying, "param/rnn.weight_ih_l0.npy", len(m["param/rnn.weight_ih_l0.npy"])), R)
    hbomb = zip_bytes({**m, "__header__.npy": (m["__header__.npy"] + bomb, zipfile.ZIP_DEFLATED)})
    out["bomb_header_lies_about_size.npz"] = (
        patch_sizes(hbomb, "__header__.npy", len(m["__header__.npy"])), R)

    # --- zip structure
    out["encrypted_flag.npz"] = (set_flag(valid, "__header__.npy", 6, 0x1), R)
    out["unknown_compression.npz"] = (set_flag(valid, "param/rnn.bias_ih_l0.npy", 8, 99), R)
    out["path_traversal_names.npz"] = (
        zip_bytes({"../../../tmp/evil.npy": npy(np.zeros(3)), "/etc/evil.npy": npy(np.zeros(3)),
                   **{k: v for k, v in m.items() if k != "param/rnn.bias_hh_l0.npy"}}), R)
    out["many_members.npz"] = (
        zip_bytes({**{f"junk/{i}.npy": b"" for i in range(200)}, "x.npy": b""}), R)

    # --- headers that are not what they should be
    out["header_deeply_nested.npz"] = (
        zip_bytes(with_header(m, None, b"[" * 200000), zipfile.ZIP_DEFLATED), R)
    out["header_not_utf8.npz"] = (zip_bytes(with_header(m, None, b"\xff\xfe{\x00")), R)
    out["header_nan.npz"] = (zip_bytes(with_header(m, None, b'{"format": NaN}')), R)
    for name, value in (("list", [1, 2]), ("string", "fastrnn-model"), ("number", 7)):
        out[f"header_is_a_{name}.npz"] = (zip_bytes(with_header(m, value)), R)
    hh = hcopy()
    hh["format_version"] = 99
    out["header_newer_version.npz"] = (zip_bytes(with_header(m, hh)), R)
    hh = hcopy()
    hh["model"] = {"type": "SequenceModel", "dtype": "float32", "rnn": [], "head": 1,
                   "embedding": 2, "loss": 3}
    out["header_config_junk.npz"] = (zip_bytes(with_header(m, hh)), R)
    hh = hcopy()
    hh["model"]["loss"] = {"name": "__import__"}
    out["header_loss_import.npz"] = (zip_bytes(with_header(m, hh)), R)
    bias = np.zeros(5, np.float32)
    hh = hcopy()
    hh["arrays"]["param/head.readout.bias"] = {
        "shape": [5], "dtype": "<f4", "sha256": hashlib.sha256(bias.tobytes()).hexdigest()}
    out["consistent_wrong_shape.npz"] = (
        zip_bytes({**with_header(m, hh), "param/head.readout.bias.npy": npy(bias)}), R)
    out["duplicate_header_members.npz"] = (_duplicate(m), R)

    # --- optimizer sections that cannot be restored (the model itself loads)
    C = "refuse_checkpoint"
    for name, value in (("list", [1]), ("string", "Adam"),
                        ("import", {**h["optimizer"], "type": "__import__"}),
                        ("bad_index", {**h["optimizer"], "state": {"x": {}}}),
                        ("state_list", {**h["optimizer"], "state": [1, 2]}),
                        ("no_groups", {k: v for k, v in h["optimizer"].items()
                                       if k != "param_groups"})):
        hh = hcopy()
        hh["optimizer"] = value
        out[f"optimizer_{name}.npz"] = (zip_bytes(with_header(m, hh)), C)
    extra = np.zeros(6, np.float32)
    hh = hcopy()
    hh["arrays"]["optim/zero/exp_avg"] = {"shape": [6], "dtype": "<f4",
                                          "sha256": hashlib.sha256(extra.tobytes()).hexdigest()}
    out["optimizer_member_bad_index.npz"] = (
        zip_bytes({**with_header(m, hh), "optim/zero/exp_avg.npy": npy(extra)}), C)
    return out


def _duplicate(m) -> bytes:
    """Two members called __header__.npy: the second claims another format."""
    buf = io.BytesIO()
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with zipfile.ZipFile(buf, "w") as zf:
            for name, data in m.items():
                zf.writestr(zipfile.ZipInfo(name, date_time=DATE), data)
            zf.writestr(zipfile.ZipInfo("__header__.npy", date_time=DATE),
                        text_npy(b'{"format": "other"}'))
    return buf.getvalue()


def main(outdir=None):
    outdir = outdir or os.path.join(HERE, "nasty")
    os.makedirs(outdir, exist_ok=True)
    files = corpus()
    for name, (data, _) in files.items():
        with open(os.path.join(outdir, name), "wb") as f:
            f.write(data)
    manifest = {name: outcome for name, (_, outcome) in sorted(files.items())}
    with open(os.path.join(outdir, "MANIFEST.json"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.write("\n")
    return manifest


if __name__ == "__main__":
    manifest = main(*sys.argv[1:])
    print(f"{len(manifest)} files")
