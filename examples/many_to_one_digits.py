"""Classify handwritten digits by reading each 8x8 image one row at a time.

A many-to-one recurrent network: 8 time steps of 8 pixels, the class read from the last
step's state.  Trains on the bundled digits, prints the test accuracy, saves the model,
reloads it and shows a few predictions with the images drawn in the terminal.

    python examples/many_to_one_digits.py [--cell lstm|gru|rnn] [--hidden 64] [--epochs 20]
                                          [--out digits.npz]
"""

import argparse
import os
import tempfile
import time

import numpy as np

import fastrnn
from fastrnn.data import load_digits, train_test_split

SHADES = " .:-=+*#%@"


def draw(image: np.ndarray) -> list[str]:
    return ["".join(SHADES[min(int(v * len(SHADES)), len(SHADES) - 1)] * 2 for v in row)
            for row in image]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", default="lstm", choices=["rnn", "lstm", "gru"])
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "digits.npz"))
    args = parser.parse_args()

    images, labels = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(images, labels, test_fraction=0.2,
                                                        seed=args.seed)
    model = fastrnn.SequenceModel.build(args.cell, input_size=8, hidden_size=args.hidden,
                                        output_size=10, head="many_to_one", seed=args.seed)
    optimizer = fastrnn.optim.Adam(model.parameters(), lr=1e-2)
    start = time.perf_counter()
    history = model.fit(x_train, y_train, epochs=args.epochs, batch_size=32,
                        optimizer=optimizer, validation_data=(x_test, y_test),
                        clip_norm=5.0, seed=args.seed, progress=False)
    seconds = time.perf_counter() - start
    result = model.evaluate(x_test, y_test)
    print(f"{args.cell.upper()} H={args.hidden}: {history.epochs} epochs in {seconds:.1f} s, "
          f"test accuracy {result['accuracy']:.4f} (loss {result['loss']:.4f}) "
          f"on {len(y_test)} held-out images")

    fastrnn.save(model, args.out, optimizer)
    reloaded = fastrnn.load(args.out)
    same = np.array_equal(reloaded.forward(x_test), model.forward(x_test))
    print(f"saved to {args.out}; reloaded model gives identical outputs: {same}")

    picks = x_test[:4]
    guesses = reloaded.predict(picks)
    rows = [draw(img) for img in picks]
    for r in range(8):
        print("   ".join(img[r] for img in rows))
    print("   ".join(f"truth {t} guess {g}".ljust(16) for t, g in zip(y_test[:4], guesses)))


if __name__ == "__main__":
    main()
