"""Find the token after a marker with a composed model: Embedding -> LSTM -> LSTM ->
attention pooling -> dense -> ReLU -> dense, built with fastrnn.Sequential.

The sequences (fastrnn.data.marker_retrieval) hold 20..40 random tokens and one marker
somewhere; the label is the token after it.  Prints the held-out accuracy after each
epoch, saves and reloads the model, and shows where the attention looks in one sequence.
``--pooling last`` (or mean, max) puts a TimePooling in place of the attention.

    python examples/composed_attention.py [--pooling attention|last|mean|max]
                                          [--hidden 32] [--epochs 5] [--samples 2000]
"""

import argparse
import os
import tempfile
import time

import numpy as np

import fastrnn
from fastrnn.data import marker_retrieval

VOCAB, STEPS = 16, 40


def build(pooling: str, hidden: int, seed: int) -> fastrnn.Sequential:
    pool = (fastrnn.AttentionPooling(hidden, hidden, seed=seed + 3) if pooling == "attention"
            else fastrnn.TimePooling(pooling))
    return fastrnn.Sequential([
        fastrnn.Embedding(VOCAB, 16, seed=seed),
        fastrnn.LSTM(16, hidden, seed=seed + 1),
        fastrnn.LSTM(hidden, hidden, seed=seed + 2),
        pool,
        fastrnn.Linear(hidden, hidden, seed=seed + 4),
        fastrnn.ReLU(),
        fastrnn.Linear(hidden, VOCAB - 2, seed=seed + 5),
    ], loss="cross_entropy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pooling", default="attention",
                        choices=["attention", "last", "mean", "max"])
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "composed.npz"))
    args = parser.parse_args()

    x, y, lengths = marker_retrieval(args.samples, STEPS, VOCAB, seed=args.seed)
    tx, ty, tlengths = marker_retrieval(500, STEPS, VOCAB, seed=args.seed + 1)
    model = build(args.pooling, args.hidden, args.seed)
    print(model)
    optimizer = fastrnn.optim.Adam(model.parameters(), lr=1e-2)
    start = time.perf_counter()
    history = model.fit(x, y, lengths, epochs=args.epochs, batch_size=32, clip_norm=1.0,
                        optimizer=optimizer, validation_data=(tx, ty, tlengths),
                        progress=False, seed=args.seed)
    seconds = time.perf_counter() - start
    accuracies = ", ".join(f"{a:.3f}" for a in history["val_accuracy"])
    print(f"{args.pooling} pooling: held-out accuracy after each epoch {accuracies} "
          f"({seconds:.1f} s; chance {1 / (VOCAB - 2):.3f})")

    fastrnn.save(model, args.out, optimizer)
    reloaded = fastrnn.load(args.out)
    same = np.array_equal(reloaded.forward(tx, tlengths), model.forward(tx, tlengths))
    print(f"saved to {args.out}; reloaded model gives identical outputs: {same}")

    if args.pooling == "attention":
        n = int(tlengths[0])
        encoder = fastrnn.Sequential(list(reloaded)[:3])      # the layers before the pooling
        weights = reloaded[3].attention(encoder(tx[:1], tlengths[:1]), tlengths[:1])[0, :n]
        marker = int(np.flatnonzero(tx[0, :n] == 1)[0])
        print(f"sequence 0: marker at step {marker}, the attention's largest weight at step "
              f"{int(weights.argmax())} ({weights.max():.2f})")


if __name__ == "__main__":
    main()
