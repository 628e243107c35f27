"""``fastrnn export`` and ``fastrnn import-torch``: a saved model to ONNX, and a PyTorch
state_dict to a fastrnn model."""

from __future__ import annotations

import argparse
import os

import numpy as np

from ..io import save
from ..models import SequenceModel
from ..onnx_export import export_onnx
from ..torch_bridge import from_state_dict
from .common import UsageError, check_out, load_model, model_kind


def cmd_export(args: argparse.Namespace) -> int:
    check_out(args.onnx, ".onnx", "an ONNX file name must end in .onnx", "--onnx")
    model, _ = load_model(args.model)
    if not isinstance(model, SequenceModel):
        raise UsageError(f"{args.model} is a {type(model).__name__}; only sequence models "
                         f"are exported (an encoder-decoder loops over generated tokens)")
    try:
        import onnx  # noqa: F401  (optional dependency: asked for here, not at start-up)
    except ImportError:
        raise UsageError("ONNX export needs the onnx package: pip install "
                         "'fastrnn[onnx]'") from None
    export_onnx(model, args.onnx, lengths=args.lengths,
                dtype=np.float32 if args.float32 else None)
    inputs = "x" + (", lengths" if args.lengths else "")
    print(f"wrote {args.onnx}: inputs {inputs}, output out ({model_kind(model)}, "
          f"opset 17, {'float32' if args.float32 else model.dtype.name})")
    return 0


def cmd_import_torch(args: argparse.Namespace) -> int:
    check_out(args.out, ".npz", "a model file name must end in .npz")
    if not os.path.exists(args.state_dict):
        raise UsageError(f"{args.state_dict}: no such file")
    if os.path.isdir(args.state_dict):
        raise UsageError(f"{args.state_dict} is a directory, not a state_dict file")
    model = from_state_dict(args.state_dict, head=args.head, loss=args.loss,
                            nonlinearity=args.nonlinearity)
    if not isinstance(model, SequenceModel):
        raise UsageError(f"{args.state_dict} holds a {type(model).__name__} alone, not a "
                         f"model with a readout; use fastrnn.from_torch in Python for a "
                         f"single layer")
    save(model, args.out, extra={"created_by": "fastrnn import-torch",
                                 "source": os.path.abspath(args.state_dict)})
    n = model.count_params()
    print(f"wrote {args.out}: {model_kind(model)}, {n} parameters from {args.state_dict}")
    return 0
