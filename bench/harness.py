"""Benchmark of the recurrent layers: fastrnn vs the NumPy reference vs PyTorch CPU.

Every (contender, workload) pair runs in its own Python process, so that one library's
BLAS / OpenMP thread pool never competes for the cores with another's. The parent
process only starts the workers, collects their JSON and prints a markdown table.

    python bench/bench_layers.py                   # everything, ~2-3 minutes on 2 cores
    python bench/bench_layers.py --only W1,W2 --contenders fastrnn,torch
    python bench/bench_layers.py --quick           # few repeats: a smoke test
    python bench/bench_layers.py --scaling         # time as H, T and B grow (~5 minutes)
    python bench/bench_layers.py --contenders precision   # bf16 and int8 engines, accuracy
    fastrnn bench --quick --json results.json      # the same options

This harness belongs to the source tree, not to the installed package: it is run by
``bench/bench_layers.py`` (which writes ``bench/results/latest.json`` by default) and by
``fastrnn bench`` when fastrnn is imported from a source checkout (an in-place build or an
editable install; the command loads this file from beside the package).  The benchmark
measures the fastrnn of this checkout.  A worker is this file run as a script (``python
bench/harness.py --worker fastrnn W2``, JSON on stdout): it imports only what its contender
needs, so a PyTorch worker never loads fastrnn's kernels or OpenMP runtime.

Modes (all float32, time-major x of shape (T, B, I), the same weights for every contender):

* ``infer``: one forward call, no state kept for backward.
* ``train``: zero_grad, forward keeping what backward needs, backward with a fixed random
  dy (input gradient included). The NumPy reference has no gradient buffers: its backward
  returns fresh arrays, so zero_grad does not apply to it.

The composed row (W11) is a whole training step of a model built with
``fastrnn.Sequential``: Embedding -> LSTM -> LSTM -> additive attention pooling -> dense
-> dense, softmax cross-entropy on one label per sequence, Adam: ``zero_grad``, forward,
loss, backward, optimizer step, against the same model written in PyTorch with the same
weights (the NumPy reference has no such model: n/a).

FastGRNN rows (Kusupati et al. 2018): PyTorch has no such cell, so its contenders run
EdgeML's ``FastGRNNCell`` (edgeml_pytorch/graph/rnn.py) as its users do, a Python loop
over the time steps differentiated by autograd; the weights are EdgeML's initial values.

Precision contenders (``--contenders precision``): the same float32 weights and inputs run
below float32 -- PyTorch with module and inputs in bfloat16 (``torch-bf16``), under
``torch.autocast("cpu", dtype=torch.bfloat16)`` (``torch-autocast``), and dynamically
quantized to int8 (``torch-int8``: ``quantize_dynamic`` of ``nn.Sequential(layer)``, since
it swaps child modules only); fastrnn's ONNX export quantized by ONNX Runtime's
``quantize_dynamic`` (``onnxruntime-int8``), and compiled by OpenVINO with its default
inference precision (``openvino``: bf16 on a CPU with AMX) and with the f32 hint
(``openvino-f32``); fastrnn's own ``quantize(layer, "int8")`` and ``autocast("bfloat16")``
(``fastrnn-int8``, ``fastrnn-bf16``: "n/a (not available)" where this fastrnn has no such
API).  Each records the precision it actually computed in, found from the engine (the
quantized graph's operators, the swapped module, OpenVINO's compiled model, the dtypes of
PyTorch's products), and its output (y; for a training step the input gradient dx) is
compared with fastrnn's float32 one: max and mean absolute difference, the accuracy
table.  Where the engine has no int8 rule for the cell (ONNX Runtime for GRU and RNN,
PyTorch for RNN), the table says so instead of showing a float time labelled int8.

The layer-normalised LSTM row (W13, Ba et al. 2016): torch.nn has no such cell either, so
its contenders run the cell written with ``torch.nn.LayerNorm`` modules, as users write it,
in a Python loop over the steps (the input projection and its normalisation hoisted out of
the loop, over all steps at once) and differentiated by autograd.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:
    # Run as a script (a worker): Python put this file's folder, bench/, first on sys.path;
    # replace it by the checkout that holds bench/ and fastrnn/, so that the workers
    # measure that checkout's fastrnn, as the parent does.
    import os as _os
    import sys as _sys

    _here = _os.path.dirname(_os.path.abspath(__file__))
    _sys.path[:] = [p for p in _sys.path if _os.path.abspath(p or ".") != _here]
    _sys.path.insert(0, _os.path.dirname(_here))


import argparse
import dataclasses
import gc
import importlib.metadata
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORKER_SCRIPT = Path(__file__).resolve()
ROOT = WORKER_SCRIPT.parent.parent     # the checkout: bench/ and the fastrnn package


@dataclasses.dataclass(frozen=True)
class Workload:
    id: str
    cell: str           # "RNN", "LSTM", "GRU" or "FastGRNN"
    T: int              # time steps
    B: int              # batch rows
    I: int              # input features
    H: int              # hidden units
    what: str           # what the row stands for
    modes: tuple = ("train", "infer")   # the first one is the workload's headline
    nonlinearity: str = "tanh"          # RNN only
    lengths: tuple | None = None        # (low, high): lengths drawn uniformly, inclusive
    stream: bool = False                # one step of a cell, the state carried (T = 1)
    proj: int = 0                       # LSTM only: proj_size (h has proj values)
    layer_norm: bool = False            # LSTM only: the layer-normalised LSTM

    @property
    def cell_name(self) -> str:
        if self.cell == "Composed":
            return "Embedding-LSTM-LSTM-attention-dense-dense"
        if self.layer_norm:
            return "LSTM (layer_norm)"
        return f"RNN {self.nonlinearity}" if self.cell == "RNN" else self.cell

    @property
    def layer_options(self) -> dict:
        """The keyword arguments of the layer (fastrnn's and torch.nn's alike)."""
        options: dict = dict(nonlinearity=self.nonlinearity) if self.cell == "RNN" else {}
        if self.proj:
            options["proj_size"] = self.proj
        if self.layer_norm:
            options["layer_norm"] = True
        return options

    def describe(self) -> str:
        text = f"{self.cell_name} T={self.T} B={self.B} I={self.I} H={self.H}"
        if self.proj:
            text += f" P={self.proj}"
        if self.lengths:
            text += f", lengths {self.lengths[0]}..{self.lengths[1]}"
        return text


# Add rows here; ids must be unique.
WORKLOADS = [
    Workload("W1", "LSTM", 100, 1, 32, 64, "inference latency", modes=("infer",)),
    Workload("W2", "LSTM", 50, 32, 32, 128, "training step"),
    Workload("W3", "GRU", 100, 64, 128, 256, "training step"),
    Workload("W4", "LSTM", 50, 128, 512, 512, "training step", modes=("train",)),
    Workload("W4i", "LSTM", 50, 128, 512, 512, "inference", modes=("infer",)),
    Workload("W5", "RNN", 200, 16, 16, 64, "training step", nonlinearity="tanh"),
    Workload("W6", "LSTM", 1, 1, 32, 128, "one streaming step called from Python",
             modes=("infer",), stream=True),
    Workload("W7", "GRU", 50, 256, 64, 128, "inference throughput", modes=("infer",)),
    Workload("W8", "LSTM", 200, 64, 32, 128, "training step with variable lengths",
             lengths=(10, 200)),
    Workload("W9", "FastGRNN", 100, 64, 32, 128, "training step", modes=("train",)),
    Workload("W10", "RNN", 100, 64, 32, 128, "training step at W9's sizes",
             modes=("train",), nonlinearity="tanh"),
    Workload("W11", "Composed", 50, 32, 32, 128, "whole training step (loss, backward, Adam)",
             modes=("train",)),
    Workload("W12", "LSTM", 100, 16, 80, 512, "training step of a projected LSTM (a small "
             "speech model)", modes=("train",), proj=128),
    Workload("W13", "LSTM", 100, 64, 32, 128, "training step of a layer-normalised LSTM",
             modes=("train",), layer_norm=True),
]

# W11's model (I is the embedding width, H both LSTMs' hidden size)
COMPOSED = dict(vocab=64, attention=64, dense=64, classes=10)
COMPOSED_CONTENDERS = ("fastrnn", "torch", "torch-1t")

# Scaling sweeps (``--scaling``): an LSTM training step around one base point, one size
# varied at a time, to show how the cost of each contender grows.
SCALING_BASE = dict(T=50, B=32, I=64, H=128)
SCALING_AXES = {
    "H": (32, 64, 128, 256, 512, 1024),
    "T": (10, 25, 50, 100, 200, 400),
    "B": (1, 4, 16, 64, 256),
}


def _scaling_workloads() -> list[Workload]:
    out = []
    for axis, values in SCALING_AXES.items():
        for value in values:
            size = dict(SCALING_BASE, **{axis: value})
            out.append(Workload(f"S{axis}{value}", "LSTM", size["T"], size["B"], size["I"],
                                size["H"], f"scaling in {axis}", modes=("train",)))
    return out


SCALING = _scaling_workloads()
SCALING_CONTENDERS = ("fastrnn", "reference", "torch")
WORKLOAD_BY_ID = {w.id: w for w in WORKLOADS + SCALING}

# name -> description; "torch-1t" is PyTorch with torch.set_num_threads(1).
CONTENDERS = {
    "fastrnn": "fastrnn (Cython over scipy's BLAS)",
    "reference": "fastrnn.reference (pure NumPy)",
    "torch": "PyTorch CPU, default threads",
    "torch-1t": "PyTorch CPU, 1 thread",
    "onnxruntime": "ONNX Runtime CPU (inference only), fastrnn's export",
    # the precision contenders: every one on the same float32 weights and inputs, its
    # output compared with fastrnn's float32 one (the accuracy table)
    "fastrnn-bf16": "fastrnn under fastrnn.autocast('bfloat16')",
    "fastrnn-int8": "fastrnn.quantize(layer, 'int8') (inference only)",
    "torch-bf16": "PyTorch CPU, module and inputs in bfloat16, default threads",
    "torch-autocast": "PyTorch CPU, float32 module under torch.autocast('cpu', "
                      "dtype=torch.bfloat16), default threads",
    "torch-int8": "PyTorch CPU, torch.ao.quantization.quantize_dynamic (qint8 weights) of "
                  "nn.Sequential(layer) (inference only)",
    "onnxruntime-int8": "ONNX Runtime CPU, fastrnn's export quantized by "
                        "onnxruntime.quantization.quantize_dynamic (QInt8; inference only)",
    "openvino": "OpenVINO CPU, fastrnn's export, OpenVINO's default inference precision "
                "(inference only)",
    "openvino-f32": "OpenVINO CPU, fastrnn's export, INFERENCE_PRECISION_HINT f32 "
                    "(inference only)",
}
NEEDS_TORCH = ("torch", "torch-1t")
TORCH_PRECISION = ("torch-bf16", "torch-autocast", "torch-int8")
INFERENCE_ONLY = ("onnxruntime", "fastrnn-int8", "torch-int8", "onnxruntime-int8",
                  "openvino", "openvino-f32")
# Contenders that compute in a lower precision than float32 (or may: OpenVINO's default
# is bf16 where the CPU has AMX): their check values are not compared with fastrnn's
# (their differences are the accuracy table's), and a failure of theirs on a workload is
# an outcome to report (the table says "refused" or "fails"), not an error of the run.
LOWER_PRECISION = ("fastrnn-bf16", "fastrnn-int8", "torch-bf16", "torch-autocast",
                   "torch-int8", "onnxruntime-int8", "openvino")
PRECISION_CONTENDERS = ("fastrnn", "fastrnn-bf16", "fastrnn-int8", "torch-bf16",
                        "torch-autocast", "torch-int8", "onnxruntime-int8", "openvino",
                        "openvino-f32")
# Names that ``--contenders`` expands (the contenders of a group that cannot be imported
# here are left out, and the run says so); "default" is the set of a plain run.
CONTENDER_GROUPS = {
    "default": ("fastrnn", "reference", "torch", "torch-1t", "onnxruntime"),
    "precision": PRECISION_CONTENDERS,
    "all": tuple(CONTENDERS),
}
# the modules a contender imports (beyond numpy and fastrnn)
REQUIRES = {
    **{c: ("torch",) for c in NEEDS_TORCH + TORCH_PRECISION},
    "onnxruntime": ("onnx", "onnxruntime"),
    "onnxruntime-int8": ("onnx", "onnxruntime"),
    "openvino": ("onnx", "openvino"),
    "openvino-f32": ("onnx", "openvino"),
}
NOT_AVAILABLE = "n/a (not available)"   # a fastrnn API that this checkout does not have

# Timing settings: per (contender, workload, mode).
FULL = dict(budget_s=1.0, warmup_s=0.2, min_warmup=3, min_repeats=5, max_repeats=2000)
QUICK = dict(budget_s=0.05, warmup_s=0.0, min_warmup=1, min_repeats=2, max_repeats=20)

MODE_NAMES = {"infer": "inference", "train": "training step"}
GATES = {"RNN": 1, "LSTM": 4, "GRU": 3}
FAST_CELLS = ("FastGRNN",)           # EdgeML's cells: their own parameters, no GEMM floor
NO_FLOOR = FAST_CELLS + ("Composed",)   # no GEMM floor: not one recurrent layer
SEED = 0


# ----------------------------------------------------------------------------- worker


def make_data(w: Workload):
    """Weights (PyTorch's names, PyTorch's default init; a FastGRNN's names in fastrnn and
    EdgeML's initial values), x and dy, seeded: the same numbers in every worker."""
    import numpy as np

    rng = np.random.default_rng(SEED)
    H = w.H
    if w.cell == "FastGRNN":
        params = {
            "weight_ih_l0": (0.1 * rng.standard_normal((H, w.I))).astype(np.float32),
            "weight_hh_l0": (0.1 * rng.standard_normal((H, H))).astype(np.float32),
            "bias_gate_l0": np.ones(H, np.float32),
            "bias_update_l0": np.ones(H, np.float32),
            "zeta_l0": np.full(1, 1.0, np.float32),
            "nu_l0": np.full(1, -4.0, np.float32),
        }
    else:
        G, bound = GATES[w.cell], 1.0 / np.sqrt(H)

        def uniform(*shape):
            return rng.uniform(-bound, bound, size=shape).astype(np.float32)

        params = {
            "weight_ih_l0": uniform(G * H, w.I),
            "weight_hh_l0": uniform(G * H, w.proj or H),
            "bias_ih_l0": uniform(G * H),
            "bias_hh_l0": uniform(G * H),
        }
        if w.layer_norm:            # the normalisations' gains and biases replace the biases
            del params["bias_ih_l0"], params["bias_hh_l0"]
            for name, rows in (("ih", 4), ("hh", 4), ("cell", 1)):
                params[f"ln_{name}_weight_l0"] = np.ones((rows, H), np.float32)
                params[f"ln_{name}_bias_l0"] = np.zeros((rows, H), np.float32)
        if w.proj:
            params["weight_hr_l0"] = uniform(w.proj, H)
    x = rng.standard_normal((w.T, w.B, w.I)).astype(np.float32)
    dy = rng.standard_normal((w.T, w.B, w.proj or H)).astype(np.float32)
    lengths = None
    if w.lengths is not None:
        lengths = rng.integers(w.lengths[0], w.lengths[1] + 1, w.B)
        lengths[0] = w.T                          # the padded length is T
    return params, x, dy, lengths


def fastrnn_info() -> dict:
    import fastrnn

    return dict(version=fastrnn.__version__, file=str(Path(fastrnn.__file__).parent),
                threads=fastrnn.get_num_threads(),
                panel_products=fastrnn.blas_info()["panel_products"],
                omp_env={k: os.environ.get(k) for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")})


def fastrnn_module(w: Workload, params):
    """The workload's fastrnn layer (a cell for a streaming step), with these weights."""
    import numpy as np

    import fastrnn

    if w.stream:
        cell = getattr(fastrnn, w.cell + "Cell")(w.I, w.H, dtype=np.float32,
                                                 **w.layer_options)
        cell.load_state_dict({k[:-3]: v for k, v in params.items()})
        return cell
    layer = getattr(fastrnn, w.cell)(w.I, w.H, dtype=np.float32, **w.layer_options)
    layer.load_state_dict(params)
    return layer


def setup_fastrnn(w: Workload, params, x, dy, lengths=None):
    info = fastrnn_info()
    if w.stream:
        cell = fastrnn_module(w, params)
        x0 = x[0]
        state = [None]

        def step():
            state[0] = cell(x0, state[0])
            return state[0][0] if isinstance(state[0], tuple) else state[0]

        return step, None, info
    layer = fastrnn_module(w, params)

    def infer():
        return layer(x, lengths=lengths)[0]

    def train():
        layer.zero_grad()
        y, _, backward = layer.forward_train(x, lengths=lengths)
        dx, _ = backward(dy)
        return dx

    return infer, train, info


def make_composed_data(w: Workload):
    """W11's weights by fastrnn's ``Sequential`` names (PyTorch's default initialisation:
    N(0, 1) for the embedding, uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)) otherwise), the
    tokens (B, T) and the labels (B,), seeded."""
    import numpy as np

    rng = np.random.default_rng(SEED)
    V, A, D, C = (COMPOSED[k] for k in ("vocab", "attention", "dense", "classes"))
    E, H = w.I, w.H

    def uniform(fan_in, *shape):
        bound = 1.0 / np.sqrt(fan_in)
        return rng.uniform(-bound, bound, size=shape).astype(np.float32)

    params = {"0.weight": rng.standard_normal((V, E)).astype(np.float32)}
    for k, width in (("1", E), ("2", H)):
        params.update({f"{k}.weight_ih_l0": uniform(H, 4 * H, width),
                       f"{k}.weight_hh_l0": uniform(H, 4 * H, H),
                       f"{k}.bias_ih_l0": uniform(H, 4 * H),
                       f"{k}.bias_hh_l0": uniform(H, 4 * H)})
    params.update({"3.v": uniform(A, A), "3.proj.weight": uniform(H, A, H),
                   "3.proj.bias": uniform(H, A), "4.weight": uniform(H, D, H),
                   "4.bias": uniform(H, D), "5.weight": uniform(D, C, D),
                   "5.bias": uniform(D, C)})
    tokens = rng.integers(0, V, (w.B, w.T))
    labels = rng.integers(0, C, w.B)
    return params, tokens, labels


def setup_fastrnn_composed(w: Workload, params, tokens, labels):
    import numpy as np

    import fastrnn
    from fastrnn.losses import softmax_cross_entropy

    V, A, D, C = (COMPOSED[k] for k in ("vocab", "attention", "dense", "classes"))
    model = fastrnn.Sequential([
        fastrnn.Embedding(V, w.I), fastrnn.LSTM(w.I, w.H), fastrnn.LSTM(w.H, w.H),
        fastrnn.AttentionPooling(w.H, A), fastrnn.Linear(w.H, D), fastrnn.Linear(D, C)],
        dtype=np.float32)
    model.load_state_dict(params)
    opt = fastrnn.optim.Adam(model.parameters(), lr=1e-3)

    def train():
        opt.zero_grad()
        out, backward = model.forward_train(tokens)
        loss, grad = softmax_cross_entropy(out, labels)
        backward(grad, input_grad=False)
        opt.step()
        return loss

    return None, train, dict(version=fastrnn.__version__, threads=fastrnn.get_num_threads())


def setup_torch_composed(w: Workload, params, tokens, labels, threads: int | None):
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    V, A, D, C = (COMPOSED[k] for k in ("vocab", "attention", "dense", "classes"))

    class Composed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(V, w.I)
            self.lstm1 = torch.nn.LSTM(w.I, w.H, batch_first=True)
            self.lstm2 = torch.nn.LSTM(w.H, w.H, batch_first=True)
            self.proj = torch.nn.Linear(w.H, A)
            self.v = torch.nn.Parameter(torch.zeros(A))
            self.fc1 = torch.nn.Linear(w.H, D)
            self.fc2 = torch.nn.Linear(D, C)

        def forward(self, t):
            h = self.lstm2(self.lstm1(self.emb(t))[0])[0]           # (B, T, H)
            a = torch.softmax(torch.tanh(self.proj(h)) @ self.v, dim=1)
            return self.fc2(self.fc1((a.unsqueeze(-1) * h).sum(dim=1)))

    names = {"0": "emb", "1": "lstm1", "2": "lstm2", "3": "", "4": "fc1", "5": "fc2"}
    model = Composed()
    model.load_state_dict({(names[k[0]] + k[1:]).lstrip("."): torch.from_numpy(v)
                           for k, v in params.items()})
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    t, y = torch.from_numpy(tokens), torch.from_numpy(labels)

    def train():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(t), y)
        loss.backward()
        opt.step()
        return loss.item()

    info = dict(version=torch.__version__, threads=torch.get_num_threads())
    return None, train, info


def setup_floor(w: Workload, params, x, lengths=None):
    """The GEMM floor of the workload: fastrnn's matrix products alone (see
    ``fastrnn._engine.gemm_floor``), per mode."""
    from fastrnn import _engine

    W_ih, W_hh = params["weight_ih_l0"], params["weight_hh_l0"]
    return {mode: _engine.gemm_floor(w.cell, x, W_ih, W_hh, lengths, train=(mode == "train"))
            for mode in w.modes}


def setup_reference(w: Workload, params, x, dy, lengths=None):
    import numpy as np

    from fastrnn import reference

    if w.stream:
        fwd = {"LSTM": reference.lstm_forward, "GRU": reference.gru_forward}.get(w.cell)
        h = np.zeros((w.B, w.H), np.float32)
        state = [h, h.copy()]
        x1 = x[:1]
        p = [params[k] for k in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")]

        def step():
            if w.cell == "LSTM":
                _, state[0], state[1], _ = fwd(x1, state[0], state[1], *p)
            elif w.cell == "GRU":
                _, state[0], _ = fwd(x1, state[0], *p)
            else:
                _, state[0], _ = reference.rnn_forward(x1, state[0], *p, w.nonlinearity)
            return state[0]

        return step, None, dict(numpy=np.__version__)
    if w.cell == "FastGRNN":
        h0 = np.zeros((w.B, w.H), np.float32)
        p = [params[k + "_l0"] for k in ("weight_ih", "weight_hh", "bias_gate", "bias_update",
                                         "zeta", "nu")]

        def infer():
            return reference.fastgrnn_forward(x, h0, *p, lengths=lengths)[0]

        def train():
            _, _, cache = reference.fastgrnn_forward(x, h0, *p, lengths=lengths)
            return reference.fastgrnn_backward(dy, None, cache)[0]

        return infer, train, dict(numpy=np.__version__)

    def infer():
        return reference.stack_forward(w.cell, x, params, lengths=lengths,
                                       nonlinearity=w.nonlinearity)[0]

    def train():
        y, _, _, cache = reference.stack_forward(w.cell, x, params, lengths=lengths,
                                                 nonlinearity=w.nonlinearity)
        dx, _, _, _ = reference.stack_backward(dy, None, None, cache)
        return dx

    return infer, train, dict(numpy=np.__version__)


def setup_torch(w: Workload, params, x, dy, threads: int | None, lengths=None):
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    kwargs = w.layer_options
    info = dict(version=torch.__version__, threads=torch.get_num_threads(),
                interop_threads=torch.get_num_interop_threads())
    if w.stream:
        cell = getattr(torch.nn, w.cell + "Cell")(w.I, w.H, dtype=torch.float32, **kwargs)
        cell.load_state_dict({k[:-3]: torch.from_numpy(v) for k, v in params.items()})
        x0 = torch.from_numpy(x[0])
        state = [None]

        def step():
            with torch.inference_mode():
                state[0] = cell(x0, state[0])
            return (state[0][0] if isinstance(state[0], tuple) else state[0]).numpy()

        return step, None, info
    if w.cell == "FastGRNN":
        return (*setup_torch_fastgrnn(w, params, x, dy, lengths), info)
    if w.layer_norm:
        return (*setup_torch_layer_norm_lstm(w, params, x, dy), info)
    module = getattr(torch.nn, w.cell)(w.I, w.H, dtype=torch.float32, **kwargs)
    module.load_state_dict({k: torch.from_numpy(v) for k, v in params.items()})
    xt = torch.from_numpy(x)
    xg = xt.clone().requires_grad_(True)
    dyt = torch.from_numpy(dy)
    pack = torch.nn.utils.rnn.pack_padded_sequence
    unpack = torch.nn.utils.rnn.pad_packed_sequence
    lt = None if lengths is None else torch.from_numpy(lengths)

    def run(inp):
        if lt is None:
            return module(inp)[0]
        y, _ = module(pack(inp, lt, enforce_sorted=False))
        return unpack(y, total_length=w.T)[0]

    def infer():
        with torch.inference_mode():
            return run(xt).numpy()

    def train():
        module.zero_grad()
        xg.grad = None
        y = run(xg)
        y.backward(dyt)
        return xg.grad.numpy()

    return infer, train, info


# PyTorch's matrix products (profiler event names) and its dtype names
TORCH_PRODUCTS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::mkldnn_rnn_layer",
                  "aten::_thnn_fused_lstm_cell", "aten::_thnn_fused_gru_cell")
TORCH_DTYPES = {"c10::BFloat16": "bf16", "float": "fp32", "torch.bfloat16": "bf16",
                "torch.float32": "fp32"}


def _torch_kind(w: Workload) -> str:
    """The torch.nn class name of a one-layer workload (``LSTMCell`` for a streaming
    step)."""
    return w.cell + ("Cell" if w.stream else "")


def unavailable_without_running(contender: str, w: Workload) -> str | None:
    """The reason ``contender`` cannot run workload ``w`` at all, known without starting
    a worker (None where a worker is to find out)."""
    if contender in TORCH_PRECISION and (w.cell in FAST_CELLS or w.layer_norm):
        return "n/a (no torch.nn layer)"
    return None


def setup_torch_precision(contender: str, w: Workload, params, x, dy, lengths=None):
    """PyTorch below float32 on the same weights: ``torch-bf16`` (module and inputs cast
    to bfloat16), ``torch-autocast`` (float32 module and inputs under
    ``torch.autocast("cpu", dtype=torch.bfloat16)``) and ``torch-int8``
    (``torch.ao.quantization.quantize_dynamic`` of ``nn.Sequential(layer)``: it swaps
    child modules only, so the layer is wrapped, and the swap is checked).  Default
    threads.  Returns ``(infer, train, info)``; a mode that cannot run is a string, the
    reason, instead of a function.  ``info["precision"]`` is what each mode computed in,
    found from its output's dtype and its products' (autocast casts the operators on its
    list only)."""
    import warnings

    import torch

    nn = torch.nn
    info = dict(version=torch.__version__, threads=torch.get_num_threads(),
                interop_threads=torch.get_num_interop_threads(), precision={})
    reason = unavailable_without_running(contender, w)
    if reason is not None:
        return reason, reason, info
    kind = _torch_kind(w)
    module = getattr(nn, kind)(w.I, w.H, dtype=torch.float32, **w.layer_options)
    suffix = "" if not w.stream else "_l0"
    module.load_state_dict({k[:len(k) - len(suffix)]: torch.from_numpy(v)
                            for k, v in params.items()})
    xs = torch.from_numpy(x[0] if w.stream else x)
    dyt = torch.from_numpy(dy)
    lt = None if lengths is None else torch.from_numpy(lengths)
    train_fn: object = None
    if contender == "torch-int8":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")            # the eager API's deprecation notes
            quantized = torch.ao.quantization.quantize_dynamic(
                nn.Sequential(module), {nn.LSTM, nn.GRU, type(module)}, dtype=torch.qint8)
        child = quantized[0]
        if type(child) is type(module):       # quantize_dynamic has no rule for it
            info["precision_detail"] = (f"quantize_dynamic left nn.{kind} as it was (it "
                                        "has no dynamic int8 module for it)")
            return f"no {kind} rule", None, info
        swapped = f"{type(child).__module__}.{type(child).__name__}"
        info["precision_detail"] = ("qint8 weights, activations quantized per call: "
                                    f"nn.{kind} swapped for {swapped}")
        info["precision"]["infer"] = "int8"
        module, xt = child, xs
    elif contender == "torch-bf16":
        module = module.to(torch.bfloat16)
        xt = xs.to(torch.bfloat16)
        dyt = dyt.to(torch.bfloat16)
    else:
        xt = xs
    autocast = contender == "torch-autocast"
    pack = nn.utils.rnn.pack_padded_sequence
    unpack = nn.utils.rnn.pad_packed_sequence

    def forward(inp):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            if w.stream:
                out = module(inp)
                return out[0] if isinstance(out, tuple) else out
            if lt is None:
                return module(inp)[0]
            y, _ = module(pack(inp, lt, enforce_sorted=False))
            return unpack(y, total_length=w.T)[0]

    state: list = [None]
    if w.stream:
        def forward_step(inp):              # the state carried from call to call
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                state[0] = module(inp, state[0])
            return state[0][0] if isinstance(state[0], tuple) else state[0]
    else:
        forward_step = forward

    def tag(call) -> str:
        """The precision of one call: its output's dtype, and that of the matrix
        products it ran, from PyTorch's profiler (autocast casts the operators on its
        list only: under it nn.GRU multiplies in bfloat16 and returns float32)."""
        products = set()
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                    record_shapes=True) as prof:
            y = call()
        try:
            for event in prof.profiler.kineto_results.events():
                if event.name() in TORCH_PRODUCTS:
                    first = [d for d in event.dtypes() if d][:1]
                    products.update(TORCH_DTYPES.get(d, d) for d in first)
        except AttributeError:           # the profiler's results changed shape
            pass
        out = TORCH_DTYPES.get(str(y.dtype), str(y.dtype))
        if "bf16" in products and out != "bf16":
            return f"bf16 products, {out} output"
        return out

    def infer():
        with torch.inference_mode():
            return forward_step(xt).float().numpy()

    if contender != "torch-int8":
        def probe():
            with torch.inference_mode():
                return forward(xt)

        info["precision"]["infer"] = tag(probe)
        if not w.stream:
            xg = xt.clone().requires_grad_(True)

            def train():
                module.zero_grad()
                xg.grad = None
                y = forward(xg)
                y.backward(dyt.to(y.dtype))
                return xg.grad.float().numpy()

            info["precision"]["train"] = tag(lambda: forward(xt.clone().requires_grad_(True)))
            train_fn = train
    return infer, train_fn, info


def setup_torch_fastgrnn(w: Workload, params, x, dy, lengths=None):
    """EdgeML's FastGRNNCell (edgeml_pytorch/graph/rnn.py, its layout: W (I, H), U (H, H),
    biases (1, H), zeta and nu (1, 1)) unrolled by a Python loop over the time steps, as
    EdgeML's FastGRNN module runs it, differentiated by autograd.  With lengths, a row
    keeps its state and outputs 0 past its last step (fastrnn's semantics)."""
    import torch

    def tensor(a):
        return torch.from_numpy(a).clone().requires_grad_(True)

    W, U = tensor(params["weight_ih_l0"].T), tensor(params["weight_hh_l0"].T)
    bias_gate = tensor(params["bias_gate_l0"].reshape(1, -1))
    bias_update = tensor(params["bias_update_l0"].reshape(1, -1))
    zeta, nu = tensor(params["zeta_l0"].reshape(1, 1)), tensor(params["nu_l0"].reshape(1, 1))
    weights = (W, U, bias_gate, bias_update, zeta, nu)
    xt, dyt = torch.from_numpy(x), torch.from_numpy(dy)
    xg = xt.clone().requires_grad_(True)
    masks = None
    if lengths is not None:
        steps = torch.arange(w.T).reshape(w.T, 1, 1)
        masks = (steps < torch.from_numpy(lengths).reshape(1, -1, 1)).to(torch.float32)

    def cell(inp, state):                # FastGRNNCell.forward
        pre_comp = torch.matmul(inp, W) + torch.matmul(state, U)
        z = torch.sigmoid(pre_comp + bias_gate)
        c = torch.tanh(pre_comp + bias_update)
        return z * state + (torch.sigmoid(zeta) * (1.0 - z) + torch.sigmoid(nu)) * c

    def run(inp):
        h = torch.zeros(w.B, w.H, dtype=torch.float32)
        outputs = []
        for t in range(w.T):
            new = cell(inp[t], h)
            if masks is None:
                h = new
                outputs.append(new)
            else:
                m = masks[t]
                h = m * new + (1 - m) * h
                outputs.append(m * new)
        return torch.stack(outputs)

    def infer():
        with torch.inference_mode():
            return run(xt).numpy()

    def train():
        for p in weights:
            p.grad = None
        xg.grad = None
        run(xg).backward(dyt)
        return xg.grad.numpy()

    return infer, train


def setup_torch_layer_norm_lstm(w: Workload, params, x, dy):
    """The layer-normalised LSTM (Ba et al. 2016) as a user writes it in PyTorch: a cell
    of Linear and LayerNorm modules unrolled by a Python loop, differentiated by autograd;
    the input projection and its normalisation run over all steps before the loop."""
    import torch

    nn = torch.nn
    I, H = w.I, w.H

    class LayerNormLSTM(nn.Module):
        def __init__(self):
            super().__init__()
            self.ih = nn.Linear(I, 4 * H, bias=False)
            self.hh = nn.Linear(H, 4 * H, bias=False)
            self.ln_ih, self.ln_hh, self.ln_cell = (nn.LayerNorm(4 * H), nn.LayerNorm(4 * H),
                                                    nn.LayerNorm(H))

        def forward(self, inp):
            h = c = torch.zeros(inp.shape[1], H)
            gx = self.ln_ih(self.ih(inp))                    # all steps at once
            outputs = []
            for t in range(inp.shape[0]):
                i, f, g, o = (gx[t] + self.ln_hh(self.hh(h))).chunk(4, dim=1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(self.ln_cell(c))
                outputs.append(h)
            return torch.stack(outputs)

    module = LayerNormLSTM()
    names = {"ih.weight": "weight_ih_l0", "hh.weight": "weight_hh_l0"}
    for part in ("ih", "hh", "cell"):
        names[f"ln_{part}.weight"] = f"ln_{part}_weight_l0"
        names[f"ln_{part}.bias"] = f"ln_{part}_bias_l0"
    module.load_state_dict({k: torch.from_numpy(params[v].reshape(-1) if k.startswith("ln_")
                                                else params[v]) for k, v in names.items()})
    xt, dyt = torch.from_numpy(x), torch.from_numpy(dy)
    xg = xt.clone().requires_grad_(True)

    def infer():
        with torch.inference_mode():
            return module(xt).numpy()

    def train():
        module.zero_grad()
        xg.grad = None
        module(xg).backward(dyt)
        return xg.grad.numpy()

    return infer, train


def export_layer(w: Workload, params, path: str, lengths=None) -> None:
    """The workload's layer (or cell) with these weights, written by
    ``fastrnn.export_onnx`` to ``path``."""
    import numpy as np

    import fastrnn

    kwargs = dict(nonlinearity=w.nonlinearity) if w.cell == "RNN" else {}
    if w.stream:
        module = getattr(fastrnn, w.cell + "Cell")(w.I, w.H, dtype=np.float32, **kwargs)
        module.load_state_dict({k[:-3]: v for k, v in params.items()})
    else:
        module = getattr(fastrnn, w.cell)(w.I, w.H, dtype=np.float32, **kwargs)
        module.load_state_dict(params)
    fastrnn.export_onnx(module, path, lengths=lengths is not None)


def onnx_runner(w: Workload, x, lengths, run):
    """The call of an exported layer by an engine's ``run(feeds) -> outputs``: the whole
    sequence, or one step of a cell with the state carried from call to call."""
    import numpy as np

    if w.stream:
        zeros = np.zeros((w.B, w.H), np.float32)
        feeds = {"x": np.ascontiguousarray(x[0]), "h": zeros}
        if w.cell == "LSTM":
            feeds["c"] = zeros.copy()

        def step():
            out = run(feeds)
            feeds["h"] = out[0]
            if w.cell == "LSTM":
                feeds["c"] = out[1]
            return out[0]

        return step
    feeds = {"x": x}
    if lengths is not None:
        feeds["lengths"] = lengths.astype(np.int64)

    def infer():
        return run(feeds)[0]

    return infer


def setup_onnxruntime(w: Workload, params, x, lengths=None, int8: bool = False):
    """The same layer exported by ``fastrnn.export_onnx`` and run by ONNX Runtime (its
    default threads); with ``int8``, the export quantized first by
    ``onnxruntime.quantization.quantize_dynamic`` (QInt8 weights).  Returns ``(infer,
    info)``; ``infer`` is the reason instead where the quantized graph kept its recurrent
    operator in float (quantize_dynamic has no rule for it): no time labelled int8 for a
    float graph."""
    import logging

    import onnxruntime as ort

    info: dict = dict(version=ort.__version__, threads="default (intra_op_num_threads=0)",
                      precision={"infer": "fp32"})
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "layer.onnx")
        export_layer(w, params, path, lengths)
        if int8:
            import onnx
            from onnxruntime.quantization import QuantType, quantize_dynamic

            qpath = os.path.join(tmp, "layer.int8.onnx")
            root = logging.getLogger()
            level = root.level
            root.setLevel(logging.ERROR)       # its advice to pre-process the graph first
            try:
                quantize_dynamic(path, qpath, weight_type=QuantType.QInt8)
            finally:
                root.setLevel(level)
            ops = [n.op_type for n in onnx.load(qpath).graph.node]
            info["quantized_graph_ops"] = ops
            left = [op for op in ops if op in ("RNN", "LSTM", "GRU")]
            if left:
                info["precision_detail"] = (f"quantize_dynamic left the ONNX {left[0]} "
                                            "operator in float32 (it has no rule for it)")
                return f"no {left[0]} rule", info
            if "DynamicQuantizeLSTM" not in ops:
                info["precision_detail"] = "quantize_dynamic changed no recurrent operator"
                return "not quantized", info
            info["precision"] = {"infer": "int8"}
            info["precision_detail"] = ("the ONNX LSTM became DynamicQuantizeLSTM (int8 "
                                        "weights, activations quantized per call)")
            path = qpath
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])

    def run(feeds):
        return session.run(None, feeds)

    return onnx_runner(w, x, lengths, run), info


def setup_openvino(w: Workload, params, x, lengths=None, f32: bool = False):
    """The same layer exported by ``fastrnn.export_onnx``, read and compiled for the CPU by
    OpenVINO: its default inference precision (bf16 where the CPU has AMX), or with the
    f32 hint.  ``info`` records the precision the compiled model chose and the runtime
    precision of its recurrent node, and OpenVINO's threads and streams."""
    import openvino as ov

    core = ov.Core()
    config = {"INFERENCE_PRECISION_HINT": "f32"} if f32 else {}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "layer.onnx")
        export_layer(w, params, path, lengths)
        compiled = core.compile_model(core.read_model(path), "CPU", config)

    def prop(name):
        value = compiled.get_property(name)
        return value.get_type_name() if isinstance(value, ov.Type) else str(value)

    nodes = {}
    for op in compiled.get_runtime_model().get_ordered_ops():
        rt = op.get_rt_info()
        if "layerType" in rt and rt["layerType"].astype(str).startswith("RNN"):
            nodes[op.get_friendly_name()] = (rt["layerType"].astype(str),
                                             rt["runtimePrecision"].astype(str))
    chosen = prop("INFERENCE_PRECISION_HINT")
    runtime = sorted({prec for _, prec in nodes.values()})
    info = dict(version=ov.__version__, threads=int(prop("INFERENCE_NUM_THREADS")),
                streams=prop("NUM_STREAMS"), performance_hint=prop("PERFORMANCE_HINT"),
                config=config, inference_precision=chosen, recurrent_nodes=nodes,
                precision={"infer": "/".join(runtime) if runtime else chosen},
                precision_detail=(f"INFERENCE_PRECISION_HINT {chosen}; recurrent node(s) "
                                  + ", ".join(f"{t} {p}" for t, p in nodes.values())))
    request = compiled.create_infer_request()

    def run(feeds):
        return request.infer(feeds)

    return onnx_runner(w, x, lengths, run), info


def setup_fastrnn_precision(contender: str, w: Workload, params, x, dy, lengths=None):
    """fastrnn below float32: ``fastrnn-int8`` (``fastrnn.quantize(layer, "int8")``, then
    a forward) and ``fastrnn-bf16`` (forward and training step under ``with
    fastrnn.autocast("bfloat16"):``).  Where this fastrnn has no such API, every mode is
    the reason ``n/a (not available)``."""
    import fastrnn

    api = "quantize" if contender == "fastrnn-int8" else "autocast"
    if not hasattr(fastrnn, api):
        info = dict(version=fastrnn.__version__, api=f"fastrnn.{api}: missing")
        return NOT_AVAILABLE, None if api == "quantize" else NOT_AVAILABLE, info
    if contender == "fastrnn-int8":
        info = fastrnn_info()
        module = fastrnn_module(w, params)
        quantized = fastrnn.quantize(module, "int8")
        quantized = module if quantized is None else quantized
        info.update(precision={"infer": "int8"},
                    precision_detail=f"fastrnn.quantize(layer, 'int8') -> "
                                     f"{type(quantized).__name__}")
        if w.stream:
            state: list = [None]
            x0 = x[0]

            def step():
                state[0] = quantized(x0, state[0])
                return state[0][0] if isinstance(state[0], tuple) else state[0]

            return step, None, info

        def infer_int8():
            return quantized(x, lengths=lengths)[0]

        return infer_int8, None, info

    infer, train, info = setup_fastrnn(w, params, x, dy, lengths)

    def under_autocast(fn):
        if fn is None:
            return None

        def call():
            with fastrnn.autocast("bfloat16"):
                return fn()

        return call

    info.update(precision={"infer": "bf16", "train": "bf16"},
                precision_detail="with fastrnn.autocast('bfloat16')")
    return under_autocast(infer), under_autocast(train), info


def cpu_counters():
    """(busy, stolen) CPU seconds of the whole machine, summed over its CPUs, from
    /proc/stat; None where it is unavailable. Busy counts every process (user, nice,
    system, irq, softirq); stolen is time the host of a virtual machine took."""
    try:
        with open("/proc/stat") as f:
            user, nice, system, _, _, irq, softirq, steal = map(int, f.readline().split()[1:9])
        hz = os.sysconf("SC_CLK_TCK")
        return (user + nice + system + irq + softirq) / hz, steal / hz
    except (OSError, ValueError):
        return None


def measure(fn, budget_s, warmup_s, min_warmup, min_repeats, max_repeats):
    """Warm up, pick a repeat count that fills about ``budget_s``, time each call."""
    warm, start = [], time.perf_counter()
    while len(warm) < min_warmup or time.perf_counter() - start < warmup_s:
        t0 = time.perf_counter()
        fn()
        warm.append(time.perf_counter() - t0)
    # per-call estimate: the median of the later warm-up calls (the first is often slow,
    # and a single call can hit a hiccup of the machine)
    later = sorted(warm[1:] or warm)
    estimate = later[len(later) // 2]
    repeats = int(min(max(budget_s / max(estimate, 1e-9), min_repeats), max_repeats))
    warmup = len(warm)
    times = []
    gc.collect()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    counters0, own0, start = cpu_counters(), time.process_time(), time.perf_counter()
    try:
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    finally:
        if gc_was_enabled:
            gc.enable()
    elapsed, own = time.perf_counter() - start, time.process_time() - own0
    counters1 = cpu_counters()
    # Shares of the machine's CPU time, while we timed, taken by other processes and by
    # the host of the virtual machine: more than a few % means a noisy measurement.
    others = steal = None
    if counters0 is not None and counters1 is not None:
        capacity = elapsed * (os.cpu_count() or 1)
        others = max(0.0, (counters1[0] - counters0[0] - own) / capacity)
        steal = (counters1[1] - counters0[1]) / capacity
    times.sort()
    n = len(times)
    median = times[n // 2] if n % 2 else 0.5 * (times[n // 2 - 1] + times[n // 2])
    return dict(median_ms=median * 1e3, min_ms=times[0] * 1e3, max_ms=times[-1] * 1e3,
                repeats=n, warmup=warmup, others=others, steal=steal)


def setup_composed(contender: str, w: Workload):
    """W11's ``(infer, train, info)`` for ``contender`` (no inference mode: None)."""
    params, tokens, labels = make_composed_data(w)
    if contender == "fastrnn":
        return setup_fastrnn_composed(w, params, tokens, labels)
    if contender in NEEDS_TORCH:
        return setup_torch_composed(w, params, tokens, labels,
                                    1 if contender == "torch-1t" else None)
    raise SystemExit(f"{w.id} runs {', '.join(COMPOSED_CONTENDERS)} only")


def setup_layer(contender: str, w: Workload):
    """A one-layer workload's ``(infer, train, info, floor)`` for ``contender`` (None
    where it has no such mode, floor None but for fastrnn)."""
    params, x, dy, lengths = make_data(w)
    floor = None
    if contender == "fastrnn":
        infer, train, info = setup_fastrnn(w, params, x, dy, lengths)
        if not w.stream and w.cell not in NO_FLOOR and not w.proj:
            floor = setup_floor(w, params, x, lengths)
    elif contender == "reference":
        infer, train, info = setup_reference(w, params, x, dy, lengths)
    elif contender in NEEDS_TORCH:
        infer, train, info = setup_torch(w, params, x, dy,
                                         1 if contender == "torch-1t" else None, lengths)
    elif contender in TORCH_PRECISION:
        infer, train, info = setup_torch_precision(contender, w, params, x, dy, lengths)
    elif contender in ("onnxruntime", "onnxruntime-int8"):
        infer, info = setup_onnxruntime(w, params, x, lengths,
                                        int8=contender == "onnxruntime-int8")
        train = None
    elif contender in ("openvino", "openvino-f32"):
        infer, info = setup_openvino(w, params, x, lengths, f32=contender == "openvino-f32")
        train = None
    elif contender in ("fastrnn-int8", "fastrnn-bf16"):
        infer, train, info = setup_fastrnn_precision(contender, w, params, x, dy, lengths)
    else:
        raise SystemExit(f"unknown contender {contender!r}; one of {sorted(CONTENDERS)}")
    return infer, train, info, floor


def os_threads() -> int | None:
    """The threads of this process now (Linux), whatever library started them."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return None


def output_path(outputs: str, contender: str, wid: str, mode: str) -> Path:
    """Where a worker given ``--outputs`` saves the output of its first call (y, or dx
    for a training step) as float32 ``.npy``, for the parent's accuracy table."""
    return Path(outputs) / f"{contender}.{wid}.{mode}.npy"


def failure_reason(exc: BaseException) -> str:
    """The table's word for a lower-precision contender's exception: "refused" for the
    errors a library raises on purpose for what it does not cover (ValueError, TypeError,
    NotImplementedError), "fails" for others."""
    refused = isinstance(exc, (ValueError, TypeError, NotImplementedError))
    return f"{'refused' if refused else 'fails'} ({type(exc).__name__})"


def run_worker(contender: str, wid: str, quick: bool, outputs: str | None = None) -> dict:
    """Time ``contender`` on workload ``wid``: per mode a measurement, or the reason it
    cannot run there (``unavailable``: the table shows it; a lower-precision contender's
    exception while it sets up or on its first call is such an outcome, "refused (...)"
    or "fails (...)", its message in ``failures``).  With ``outputs``, the first call's
    output is saved there."""
    import numpy as np

    w = WORKLOAD_BY_ID[wid]
    floor = None
    try:
        if w.cell == "Composed":
            infer, train, info = setup_composed(contender, w)
        else:
            infer, train, info, floor = setup_layer(contender, w)
    except Exception as exc:                      # noqa: BLE001  (reported, see above)
        if contender not in LOWER_PRECISION:      # e.g. fastrnn.quantize refusing a layer
            raise
        reason = failure_reason(exc)
        modes = [m for m in w.modes if m == "infer" or contender not in INFERENCE_ONLY]
        return dict(contender=contender, workload=wid, info={}, modes={},
                    unavailable={m: reason for m in modes},
                    failures={m: f"{type(exc).__name__}: {exc}" for m in modes})
    precision = info.pop("precision", None) or {}
    settings = QUICK if quick else FULL
    out: dict = dict(contender=contender, workload=wid, info=info, modes={})
    unavailable, failures = {}, {}
    for mode in w.modes:
        fn = infer if mode == "infer" else train
        if fn is None:
            continue                              # an inference-only contender
        if isinstance(fn, str):
            unavailable[mode] = fn
            continue
        try:
            first = fn()
        except Exception as exc:                  # noqa: BLE001  (reported, see above)
            if contender not in LOWER_PRECISION:
                raise
            unavailable[mode] = failure_reason(exc)
            failures[mode] = f"{type(exc).__name__}: {exc}"
            continue
        if outputs:
            np.save(output_path(outputs, contender, wid, mode),
                    np.asarray(first, dtype=np.float32), allow_pickle=False)
        # mean |y| (infer) or mean |dx| (train; W11: the first step's loss): lets the
        # parent check that every contender computed the same thing.
        check = float(np.abs(np.asarray(first, dtype=np.float64)).mean())
        m = dict(measure(fn, **settings), check=check,
                 precision=precision.get(mode, "fp32"), os_threads=os_threads())
        out["modes"][mode] = m
        if floor is not None:
            m["floor"] = measure(floor[mode], **settings)
    if unavailable:
        out["unavailable"] = unavailable
    if failures:
        out["failures"] = failures
    return out


# ----------------------------------------------------------------------------- parent


#: the CPU flags (as /proc/cpuinfo names them) that decide which kernels run, in the order
#: a table states them: the model name alone does not tell an Ice Lake from a Sapphire
#: Rapids Xeon under a hypervisor
ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def machine_info() -> dict:
    cpu = platform.processor() or platform.machine()
    flags: list[str] = []
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    have = set(line.split(":", 1)[1].split())
                    flags = [flag for flag in ISA_FLAGS if flag in have]
                    break
    except OSError:
        pass
    versions = {}
    for dist in ("numpy", "scipy", "torch", "onnxruntime", "openvino", "fastrnn"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = None
    import numpy
    import scipy
    versions["numpy"], versions["scipy"] = numpy.__version__, scipy.__version__
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    env = {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                      "MKL_NUM_THREADS") if k in os.environ}
    return dict(cpu=cpu, isa=flags, cores=os.cpu_count(), usable_cores=usable,
                python=platform.python_version(), platform=platform.platform(),
                versions=versions, thread_env=env)


def worker_env() -> dict:
    """The environment of a worker: this process's, without the OpenMP settings that
    importing fastrnn here added (``fastrnn._ENV_SET``).  A worker that measures fastrnn
    imports it and gets them again; PyTorch (whose OpenMP runtime reads them too) runs
    with its own defaults, as in a program without fastrnn."""
    added = getattr(sys.modules.get("fastrnn"), "_ENV_SET", ())
    return {k: v for k, v in os.environ.items() if k not in added}


def spawn_worker(contender: str, wid: str, quick: bool, timeout: float,
                 outputs: str | None = None) -> dict:
    cmd = [sys.executable, str(WORKER_SCRIPT), "--worker", contender, wid]
    if quick:
        cmd.append("--quick")
    if outputs:
        cmd += ["--outputs", outputs]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              cwd=ROOT, env=worker_env())
    except subprocess.TimeoutExpired:
        return dict(contender=contender, workload=wid, error=f"timed out after {timeout} s")
    wall = time.perf_counter() - t0
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        err = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return dict(contender=contender, workload=wid,
                    error=f"exit code {proc.returncode}: {err}")
    result = json.loads(lines[-1])
    result["wall_s"] = wall
    return result


def fmt_ms(r):
    if r is None:
        return "n/a"
    return f"{r['median_ms']:.3g}" if r["median_ms"] < 100 else f"{r['median_ms']:.0f}"


def fmt_ratio(a, b):
    if a is None or b is None:
        return "n/a"
    return f"{a['median_ms'] / b['median_ms']:.2f}"


def _cells(results):
    """(contender, workload, mode) -> the measurement, and -> the reason it is missing."""
    measured, reasons = {}, {}
    for r in results:
        for mode, m in r.get("modes", {}).items():
            measured[(r["contender"], r["workload"], mode)] = m
        for mode, why in r.get("unavailable", {}).items():
            reasons[(r["contender"], r["workload"], mode)] = why
    return measured, reasons


def _row_label(w: Workload, mode: str) -> list[str]:
    what = w.what if mode == w.modes[0] else MODE_NAMES[mode]
    return [w.id, f"{w.describe()}, {what}"]


def markdown_table(workloads, contenders, results) -> str:
    """Median ms per contender and the ratios other/fastrnn; a contender that cannot run
    a workload shows why (``n/a``, ``no GRU rule``, ``fails (...)``)."""
    by_key, reasons = _cells(results)
    cols = ["workload", "description"]
    cols += [f"{c} ms" for c in contenders]
    ratio_cols = [c for c in contenders if c != "fastrnn"] if "fastrnn" in contenders else []
    cols += [f"{c}/fastrnn" for c in ratio_cols]
    with_floor = "fastrnn" in contenders
    if with_floor:
        cols += ["GEMM floor ms", "fastrnn/floor"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for w in workloads:
        for mode in w.modes:
            row = _row_label(w, mode)
            get = {c: by_key.get((c, w.id, mode)) for c in contenders}
            row += [fmt_ms(get[c]) if get[c] is not None
                    else reasons.get((c, w.id, mode), "n/a") for c in contenders]
            row += [fmt_ratio(get[c], get["fastrnn"]) for c in ratio_cols]
            if with_floor:
                fl = (get["fastrnn"] or {}).get("floor")
                row += [fmt_ms(fl), fmt_ratio(get["fastrnn"], fl)]
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def accuracy(a, b, lengths=None) -> dict:
    """How far output ``a`` (a contender's) lies from ``b`` (fastrnn's float32 one on the
    same weights and inputs): max and mean |a - b|.  With ``lengths`` and outputs of shape
    (T, B, ...), over the valid steps (t < lengths[b]) only, and the largest |a - b| at the
    padded steps apart (``padded_max_abs``: fastrnn's outputs and input gradients are 0
    there)."""
    import numpy as np

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return dict(error=f"shape {a.shape} against fastrnn's {b.shape}")
    d = np.abs(a - b)
    if lengths is None or d.ndim < 2 or d.shape[1] != len(lengths):
        return dict(max_abs=float(d.max(initial=0.0)), mean_abs=float(d.mean()))
    lengths = np.asarray(lengths)
    valid = np.arange(d.shape[0])[:, None] < lengths[None, :]            # (T, B)
    out = dict(max_abs=float(d[valid].max(initial=0.0)), mean_abs=float(d[valid].mean()))
    out["padded_max_abs"] = float(d[~valid].max(initial=0.0))
    return out


def add_accuracy(results, outputs: str) -> None:
    """Each measured mode's ``accuracy`` against fastrnn float32, from the outputs the
    workers saved in ``outputs`` (where fastrnn ran that mode of the workload)."""
    import numpy as np

    lengths_of: dict = {}
    for r in results:
        if r["contender"] == "fastrnn":
            continue
        wid = r["workload"]
        w = WORKLOAD_BY_ID[wid]
        for mode, m in r.get("modes", {}).items():
            base = output_path(outputs, "fastrnn", wid, mode)
            mine = output_path(outputs, r["contender"], wid, mode)
            if not (base.exists() and mine.exists()):
                continue
            if wid not in lengths_of:
                lengths_of[wid] = make_data(w)[3] if w.lengths and w.cell != "Composed" else None
            m["accuracy"] = dict(
                accuracy(np.load(mine, allow_pickle=False), np.load(base, allow_pickle=False),
                         lengths_of[wid]),
                against="fastrnn float32", output="dx" if mode == "train" else "y")


PADDED_MARK = " (padded steps not 0)"


def fmt_accuracy(acc) -> str:
    if "error" in acc:
        return acc["error"]
    text = f"{acc['max_abs']:.2g} / {acc['mean_abs']:.2g}"
    if acc.get("padded_max_abs", 0.0) > 0.0:
        text += PADDED_MARK
    return text


def _contender_table(workloads, contenders, results, heading, cell) -> str:
    """A table of one row per workload and mode and one column per contender (named
    ``heading(c)``): ``cell(measurement)`` where the contender ran, else why it did not."""
    by_key, reasons = _cells(results)
    cols = ["workload", "description"] + [heading(c) for c in contenders]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for w in workloads:
        for mode in w.modes:
            row = _row_label(w, mode)
            for c in contenders:
                m = by_key.get((c, w.id, mode))
                value = cell(m) if m is not None else None
                row.append(value if value is not None
                           else reasons.get((c, w.id, mode), "n/a"))
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def accuracy_table(workloads, contenders, results) -> str:
    """Max / mean absolute difference from fastrnn's float32 output per contender
    (inference: y; training step: the input gradient dx), on the benchmark's shapes,
    weights and inputs."""
    return _contender_table(
        workloads, [c for c in contenders if c != "fastrnn"], results,
        lambda c: f"{c} max / mean",
        lambda m: fmt_accuracy(m["accuracy"]) if "accuracy" in m else None)


def precision_table(workloads, contenders, results) -> str:
    """The precision each contender computed in, per workload and mode, as it found out
    (autocast's output dtype, the quantized graph's operators, OpenVINO's compiled
    model), or why it did not run."""
    return _contender_table(workloads, list(contenders), results, str,
                            lambda m: m.get("precision", "fp32"))


def precision_tables(workloads, contenders, results) -> str:
    """The accuracy and precision tables, with their headings (empty where the run has no
    contender below float32 or no fastrnn to compare with)."""
    if "fastrnn" not in contenders or not any(c in PRECISION_CONTENDERS and c != "fastrnn"
                                              for c in contenders):
        return ""
    parts = ["Accuracy against fastrnn float32 on the same weights and inputs: max / mean "
             "absolute difference of y (inference) or of the input gradient dx (training "
             "step)"
             + ("; where lengths vary, over the valid steps only (a cell marked "
                f"\"{PADDED_MARK.strip()}\": that contender's outputs at padded steps are "
                "not zero, as fastrnn's are)" if any(w.lengths for w in workloads) else "")
             + ".",
             "", accuracy_table(workloads, contenders, results), "",
             "Precision used (as each engine reports or its outputs show):", "",
             precision_table(workloads, contenders, results)]
    return "\n".join(parts)


def scaling_tables(workloads, contenders, results) -> str:
    """One markdown table per swept size: time per training step and ratios to fastrnn."""
    by_key = {(r["contender"], r["workload"]): r["modes"].get("train")
              for r in results if "modes" in r}
    ratio_cols = [c for c in contenders if c != "fastrnn"] if "fastrnn" in contenders else []
    parts = []
    for axis in SCALING_AXES:
        rows = [w for w in workloads if w.id.startswith(f"S{axis}")]
        if not rows:
            continue
        fixed = ", ".join(f"{k}={v}" for k, v in SCALING_BASE.items() if k != axis)
        cols = [axis] + [f"{c} ms" for c in contenders] + [f"{c}/fastrnn" for c in ratio_cols]
        if "fastrnn" in contenders:
            cols += ["fastrnn/floor"]
        lines = [f"LSTM training step, {fixed}, {axis} varied:", "",
                 "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for w in rows:
            get = {c: by_key.get((c, w.id)) for c in contenders}
            row = [str(getattr(w, axis))] + [fmt_ms(get[c]) for c in contenders]
            row += [fmt_ratio(get[c], get["fastrnn"]) for c in ratio_cols]
            if "fastrnn" in contenders:
                row.append(fmt_ratio(get["fastrnn"], (get["fastrnn"] or {}).get("floor")))
            lines.append("| " + " | ".join(row) + " |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


NOISY = 0.05   # share of the CPU time taken by others above which a measurement is noisy


def noise(m) -> float:
    """Share of the machine's CPU time that other processes or the host took while
    one measurement was timed (0 where unknown)."""
    return (m.get("others") or 0.0) + (m.get("steal") or 0.0)


def max_noise(result) -> float:
    return max((noise(m) for m in result.get("modes", {}).values()), default=0.0)


def noise_warnings(results, limit=NOISY):
    out = []
    for r in results:
        for mode, m in r.get("modes", {}).items():
            if noise(m) > limit:
                out.append(f"{r['workload']} {mode} {r['contender']}: other processes or the "
                           f"host took {noise(m):.0%} of the CPU time while timing (min "
                           f"{m['min_ms']:.3g} ms, median {m['median_ms']:.3g} ms)")
    return out


def consistency_warnings(results, rtol=1e-3):
    """Float32 contenders that disagree with fastrnn on mean |y| or mean |dx|."""
    checks, padded = {}, set()
    for r in results:
        for mode, m in r.get("modes", {}).items():
            checks.setdefault((r["workload"], mode), {})[r["contender"]] = m["check"]
            if m.get("accuracy", {}).get("padded_max_abs", 0.0) > 0.0:
                padded.add((r["workload"], mode, r["contender"]))
    out = []
    for (wid, mode), vals in checks.items():
        base = vals.get("fastrnn")
        for c, v in vals.items():
            if c in LOWER_PRECISION:
                continue                  # below float32: the accuracy table says by how much
            if base is not None and abs(v - base) > rtol * abs(base):
                why = (" (its outputs at padded steps are not zero)"
                       if (wid, mode, c) in padded else "")
                out.append(f"{wid} {mode}: {c} check {v:.6g} differs from fastrnn "
                           f"{base:.6g}{why}")
    return out


def add_arguments(p: argparse.ArgumentParser, default_json: str | None = None) -> None:
    """The benchmark's options, on ``p`` (the script's parser or ``fastrnn bench``'s)."""
    p.add_argument("--worker", nargs=2, metavar=("CONTENDER", "WORKLOAD"),
                   help="run one contender on one workload in this process; JSON on stdout")
    p.add_argument("--only", help="comma-separated workload ids (default: all)")
    p.add_argument("--scaling", action="store_true", help="the scaling sweeps instead of "
                   "the workload table: an LSTM training step as H, T and B grow (ids "
                   "S<axis><value>; default contenders " + ",".join(SCALING_CONTENDERS) + ")")
    p.add_argument("--contenders", help="comma-separated names, from "
                   + ",".join(CONTENDERS) + ", or groups: "
                   + "; ".join(f"{g} = {','.join(cs)}" for g, cs in CONTENDER_GROUPS.items())
                   + " (a group's contenders that cannot be imported here are left out; "
                   "default: the default group)")
    p.add_argument("--quick", action="store_true", help="few repeats: a smoke test")
    p.add_argument("--outputs", metavar="DIR", help=argparse.SUPPRESS)  # a worker's outputs
    if default_json is None:
        p.add_argument("--json", default=None, help="where to write the results "
                       "(default: not written)")
    else:
        p.add_argument("--json", default=str(default_json), help="where to write the "
                       "results (default: %(default)s)")
    p.add_argument("--retries", type=int, default=1, help="re-runs of a worker during "
                   "which other processes (or the host) took more than 5%% of the CPU time "
                   "(default: %(default)s)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per worker")
    p.add_argument("--rounds", type=int, default=1, help="run every worker this many times, "
                   "round by round, and report the median of their medians (default: "
                   "%(default)s; the README's tables use 3)")


def measured_worker(c: str, wid: str, args, outputs: str | None = None) -> dict:
    """One worker's result, run again (up to ``args.retries`` times) while other processes
    took more than NOISY of the CPU time."""
    r = spawn_worker(c, wid, args.quick, args.timeout, outputs)
    for _ in range(args.retries):
        if "error" in r or max_noise(r) <= NOISY:
            break
        print(f"  {wid} {c}: noisy ({max_noise(r):.0%} of the CPU time taken by others), "
              "running again", file=sys.stderr, flush=True)
        again = spawn_worker(c, wid, args.quick, args.timeout, outputs)
        if "error" not in again and max_noise(again) < max_noise(r):
            r = again
    return r


def _median(values: list[float]) -> float:
    v = sorted(values)
    n = len(v)
    return v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])


def _combine_measures(ms: list[dict]) -> dict:
    out = dict(ms[0])
    out.update(median_ms=_median([m["median_ms"] for m in ms]),
               min_ms=min(m["min_ms"] for m in ms), max_ms=max(m["max_ms"] for m in ms),
               repeats=sum(m["repeats"] for m in ms), warmup=sum(m["warmup"] for m in ms),
               others=max((m.get("others") or 0.0) for m in ms),
               steal=max((m.get("steal") or 0.0) for m in ms),
               round_medians_ms=[m["median_ms"] for m in ms])
    return out


def combine_rounds(rs: list[dict]) -> dict:
    """The result of one (contender, workload) over several processes (rounds): per mode
    the median of the rounds' medians, the overall min and max, each round's median; the
    GEMM floor likewise.  One round is returned as it is, and a failed round as the
    result (so that the run reports the error)."""
    failed = [r for r in rs if "error" in r]
    if len(rs) == 1 or failed:
        return failed[0] if failed else rs[0]
    ok = rs
    out = dict(ok[-1], rounds=len(ok))
    out["modes"] = {}
    for mode in ok[0]["modes"]:
        ms = [r["modes"][mode] for r in ok if mode in r["modes"]]
        m = _combine_measures(ms)
        floors = [x["floor"] for x in ms if "floor" in x]
        if floors:
            m["floor"] = _combine_measures(floors)
        out["modes"][mode] = m
    return out


def importable(contender: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in REQUIRES.get(contender, ()))


def resolve_contenders(spec: str | None, scaling: bool, error) -> tuple[list[str], list[str]]:
    """The contenders of ``--contenders`` (names and groups, in order, without repeats)
    and those of its groups left out because they cannot be imported here.  A name given
    as itself is kept (its worker then reports the missing module).  Without ``spec``:
    the default group (with ``scaling``, its contenders of the sweeps)."""
    tokens = [t.strip() for t in (spec or "default").split(",") if t.strip()]
    unknown = [t for t in tokens if t not in CONTENDERS and t not in CONTENDER_GROUPS]
    if unknown:
        error(f"unknown contender(s) {unknown}; known: {list(CONTENDERS)}, or the groups "
              f"{list(CONTENDER_GROUPS)}")
    chosen: list[str] = []
    left_out: list[str] = []
    for t in tokens:
        for c in CONTENDER_GROUPS.get(t, (t,)):
            if t in CONTENDER_GROUPS and not importable(c):
                if c not in left_out:
                    left_out.append(c)
            elif c not in chosen:
                chosen.append(c)
    if spec is None and scaling:
        chosen = [c for c in chosen if c in SCALING_CONTENDERS]
    left_out = [c for c in left_out if c not in chosen]
    return chosen, left_out


def run(args, error, command: list) -> int:
    """Run the benchmark for parsed ``args``; ``error(message)`` reports a bad option
    (and does not return); ``command`` is recorded in the JSON.  Returns the exit code."""
    if args.rounds < 1:
        error(f"--rounds must be at least 1, got {args.rounds}")
    if args.worker:
        contender, wid = args.worker
        if wid not in WORKLOAD_BY_ID:
            error(f"unknown workload {wid!r}")
        print(json.dumps(run_worker(contender, wid, args.quick, args.outputs)))
        return 0

    if args.only:
        ids = [s.strip() for s in args.only.split(",") if s.strip()]
        unknown = [i for i in ids if i not in WORKLOAD_BY_ID]
        if unknown:
            error(f"unknown workload(s) {unknown}; known: {list(WORKLOAD_BY_ID)}")
        workloads = [WORKLOAD_BY_ID[i] for i in ids]
    else:
        workloads = list(SCALING if args.scaling else WORKLOADS)
    contenders, left_out = resolve_contenders(args.contenders, args.scaling, error)
    machine = machine_info()
    header = (f"Machine: {machine['cpu']}, {machine['cores']} cores "
              f"({machine['usable_cores']} usable); Python {machine['python']}; "
              + ", ".join(f"{k} {v}" for k, v in machine["versions"].items() if v))
    print(header, flush=True)
    if left_out:
        print(f"Left out (not importable here): {', '.join(left_out)}", file=sys.stderr,
              flush=True)

    rounds: dict[tuple[str, str], list] = {}
    outputs = tempfile.TemporaryDirectory(prefix="fastrnn-bench-")
    t0 = time.perf_counter()
    for k in range(args.rounds):            # round by round: a slow spell of the machine
        for w in workloads:                 # falls on every contender alike
            for c in contenders:
                if c in INFERENCE_ONLY and "infer" not in w.modes:
                    continue
                if w.cell == "Composed" and c not in COMPOSED_CONTENDERS:
                    continue
                reason = unavailable_without_running(c, w)
                if reason is not None:
                    modes = [m for m in w.modes if m == "infer" or c not in INFERENCE_ONLY]
                    rounds.setdefault((c, w.id), []).append(dict(
                        contender=c, workload=w.id, info={}, modes={},
                        unavailable={m: reason for m in modes}))
                    continue
                # the first round's outputs make the accuracy table
                r = measured_worker(c, w.id, args, outputs.name if k == 0 else None)
                tag = f" (round {k + 1}/{args.rounds})" if args.rounds > 1 else ""
                if "error" in r:
                    print(f"  {w.id} {c}{tag}: ERROR {r['error']}", file=sys.stderr, flush=True)
                else:
                    summary = ", ".join(
                        [f"{mode} {m['median_ms']:.3g} ms (n={m['repeats']})"
                         for mode, m in r["modes"].items()]
                        + [f"{mode} {why}" for mode, why in r.get("unavailable", {}).items()])
                    print(f"  {w.id} {c}{tag}: {summary}", file=sys.stderr, flush=True)
                rounds.setdefault((c, w.id), []).append(r)
    results = [combine_rounds(rs) for rs in rounds.values()]
    total = time.perf_counter() - t0
    add_accuracy(results, outputs.name)
    outputs.cleanup()

    print()
    print("Median time per call (ms); ratios are other/fastrnn: >1 means fastrnn is faster.")
    print()
    if args.scaling:
        print(scaling_tables(workloads, contenders, results))
    else:
        print(markdown_table(workloads, contenders, results))
        more = precision_tables(workloads, contenders, results)
        if more:
            print()
            print(more)
    for msg in consistency_warnings(results) + noise_warnings(results):
        print(f"WARNING: {msg}")
    print(f"\nTotal wall time {total:.0f} s.")

    out = dict(
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        command=list(command),
        machine=machine,
        settings=dict(quick=args.quick, scaling=args.scaling, rounds=args.rounds,
                      dtype="float32", seed=SEED,
                      timing=QUICK if args.quick else FULL),
        contenders={c: CONTENDERS[c] for c in contenders},
        left_out=left_out,
        workloads=[dict(dataclasses.asdict(w), description=w.describe()) for w in workloads],
        results=results,
        total_wall_s=total,
    )
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(out, indent=2) + "\n")
        print(f"Results written to {path}")
    return 1 if any("error" in r for r in results) else 0


def main(argv=None, default_json: str | None = None, prog: str | None = None) -> int:
    """The benchmark as a program: parse ``argv`` (default ``sys.argv[1:]``) and run."""
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    add_arguments(p, default_json)
    args = p.parse_args(argv)
    command = [prog or Path(sys.argv[0]).name] + (list(argv) if argv is not None
                                                  else sys.argv[1:])
    return run(args, p.error, command)


if __name__ == "__main__":
    sys.exit(main())
