"""Write the SequenceModel fixtures in tests/data/presets/ (run from anywhere).

    python tests/data/make_presets.py [OUTDIR]

They were written by fastrnn 0.1.0 before ``SequenceModel`` became a preset of
``Sequential``, and are kept as they were: tests/test_presets.py checks that the files
still load and that today's code gives the numbers recorded in them.

For each case ``NAME`` (the ``CASES`` below):

* ``NAME.npz`` -- a checkpoint (``fastrnn.save`` with the optimizer and ``extra``) of the
  model built by ``SequenceModel.build(**build)`` and trained for one epoch;
* ``NAME.expected.npz`` -- plain arrays (no pickle): ``init/<param>`` the built model's
  weights, the data (``x``, ``y``, ``lengths``), what the loaded model gives
  (``forward``, ``predict``, ``proba`` where the loss has one, ``grad/<param>`` of the
  loss of the whole data set, ``stream`` where the model can stream, ``generate`` for
  the one-to-many case), and ``fit/<param>`` and ``history/<key>``: the weights and logs
  after two more epochs from the checkpoint (its optimizer, ``FIT`` below).
"""

import json
import os
import sys
import zlib

import numpy as np

import fastrnn
from fastrnn.training import loss_sums

HERE = os.path.dirname(os.path.abspath(__file__))
N, T = 10, 6
FIT = dict(epochs=3, initial_epoch=1, batch_size=4, seed=3, progress=False)

CASES = {
    # tokens, LSTM, many-to-one, lengths, cross-entropy, float32
    "lstm_tokens_many_to_one": dict(
        build=dict(cell="lstm", vocab_size=7, embedding_dim=5, hidden_size=6,
                   output_size=3, head="many_to_one", seed=11),
        lengths=True),
    # floats, bidirectional GRU, two layers, many-to-many, lengths, mse, float64
    "gru_bidirectional_many_to_many": dict(
        build=dict(cell="gru", input_size=3, hidden_size=5, output_size=2, num_layers=2,
                   bidirectional=True, head="many_to_many", loss="mse", dtype="float64",
                   seed=12),
        lengths=True),
    # tokens, relu RNN, one-to-many (a language model), batch_first, float32
    "rnn_relu_tokens_one_to_many": dict(
        build=dict(cell="rnn", vocab_size=6, hidden_size=7, output_size=6,
                   head="one_to_many", nonlinearity="relu", batch_first=True, seed=13),
        lengths=False),
    # floats, bidirectional LSTM, many-to-one, binary, float64
    "lstm_bidirectional_binary": dict(
        build=dict(cell="lstm", input_size=4, hidden_size=5, output_size=1,
                   bidirectional=True, head="many_to_one", loss="bce_with_logits",
                   dtype="float64", seed=14),
        lengths=True),
    # floats, projected LSTM, many-to-many, truncated BPTT, cross-entropy, float32
    "lstm_proj_tbptt": dict(
        build=dict(cell="lstm", input_size=3, hidden_size=8, proj_size=4, output_size=4,
                   head="many_to_many", seed=15),
        lengths=True, tbptt=4),
    # floats, FastGRNN, many-to-one, float32
    "fastgrnn_many_to_one": dict(
        build=dict(cell="fastgrnn", input_size=3, hidden_size=6, output_size=3,
                   head="many_to_one", seed=16),
        lengths=False),
}


def data(model, case, rng):
    b = case["build"]
    tokens = model.embedding is not None
    if tokens:
        x = rng.integers(0, b["vocab_size"], (N, T))
    else:
        x = rng.standard_normal((N, T, b["input_size"])).astype(b.get("dtype", "float32"))
    lengths = rng.integers(2, T + 1, N) if case["lengths"] else None
    C = b["output_size"]
    lead = (N, T) if model.head.per_step else (N,)
    loss = b.get("loss", "cross_entropy")
    if loss == "cross_entropy":
        y = rng.integers(0, C, lead)
    elif loss == "bce_with_logits":
        y = rng.integers(0, 2, lead + (C,)).astype(float)
    else:
        y = rng.standard_normal(lead + (C,))
    return x, y, lengths


def write(name, case, out):
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    model = fastrnn.SequenceModel.build(**case["build"])
    arrays = {f"init/{k}": v for k, v in model.state_dict().items()}
    x, y, lengths = data(model, case, rng)
    tbptt = case.get("tbptt")
    opt = fastrnn.optim.Adam(model.parameters(), lr=1e-2)
    model.fit(x, y, lengths, epochs=1, batch_size=4, seed=3, progress=False, optimizer=opt,
              tbptt=tbptt)
    fastrnn.save(os.path.join(out, f"{name}.npz"), model, optimizer=opt,
                 extra={"epoch": 0, "case": name})
    model, opt, _ = fastrnn.load_checkpoint(os.path.join(out, f"{name}.npz"))
    arrays.update(x=x, y=y)
    if lengths is not None:
        arrays["lengths"] = lengths
    arrays["forward"] = model.forward(x, lengths)
    arrays["predict"] = model.predict(x, lengths)
    if model.loss.name != "mse":
        arrays["proba"] = model.predict_proba(x, lengths)
    model.zero_grad()
    out_, _, backward = model.forward_train(x, lengths)
    mask = None
    if model.head.per_step and lengths is not None:
        mask = np.arange(T)[None, :] < lengths[:, None]
    _, grad, _, _ = loss_sums(model.loss, out_, y, mask)
    backward(grad)
    arrays.update({f"grad/{k}": p.grad.copy() for k, p in model.named_parameters()})
    model.zero_grad()
    if model.head.per_step and not model.rnn.bidirectional:
        stepper = model.stepper(N)
        xs = x.swapaxes(0, 1)
        arrays["stream"] = stepper.run(xs)
    if name == "rnn_relu_tokens_one_to_many":
        arrays["generate"] = model.generate(x[:2, :3], 5, temperature=0.7, seed=4)
    history = model.fit(x, y, lengths, optimizer=opt, tbptt=tbptt, **FIT)
    arrays.update({f"fit/{k}": v for k, v in model.state_dict().items()})
    arrays.update({f"history/{k}": np.array(v) for k, v in history.history.items()})
    arrays["case"] = np.frombuffer(json.dumps(case).encode(), np.uint8)
    np.savez(os.path.join(out, f"{name}.expected.npz"), **arrays)


def main(out):
    os.makedirs(out, exist_ok=True)
    for name, case in CASES.items():
        write(name, case, out)
        print("wrote", name)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "presets"))
