"""Classify a stream before it ends: a many-to-one model's stepper, one step at a time.

A many-to-one network reads 8x8 digit images one row (8 pixels) per step.  Its stepper
gives, after every row, the prediction for the rows read so far -- what the model gives for
that prefix -- so each stream can stop as soon as the model is confident enough.  Prints
the test accuracy after each row, then what stopping at a confidence threshold costs and
saves (rows read, accuracy).

    python examples/streaming_early_classification.py [--cell gru] [--hidden 64]
                                                      [--epochs 15] [--threshold 0.9]
"""

import argparse

import numpy as np

import fastrnn
from fastrnn.data import load_digits, train_test_split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", default="gru", choices=["rnn", "lstm", "gru"])
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--threshold", type=float, default=0.9,
                        help="stop a stream once its most likely class has this probability")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    images, labels = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(images, labels, test_fraction=0.2,
                                                        seed=args.seed)
    model = fastrnn.SequenceModel.build(args.cell, input_size=8, hidden_size=args.hidden,
                                        output_size=10, head="many_to_one", seed=args.seed)
    # trained on every prefix too (each image once per length), so that the early
    # predictions are trained ones: a model trained on whole images only guesses at them
    steps = images.shape[1]
    prefixes = np.concatenate([x_train] * steps)
    lengths = np.repeat(np.arange(1, steps + 1), len(x_train))
    model.fit(prefixes, np.concatenate([y_train] * steps), lengths, epochs=args.epochs,
              batch_size=64, optimizer=fastrnn.optim.Adam(model.parameters(), lr=1e-2),
              clip_norm=5.0, seed=args.seed, progress=False)

    # the test images as streams: all of them at once, one row per call
    stepper = model.stepper(batch_size=len(x_test))
    proba = np.empty((len(x_test), steps, 10))
    for t in range(steps):
        logits = stepper.step(x_test[:, t])              # (N, 10): the image so far
        proba[:, t] = model.loss.proba(logits)
    same = np.allclose(proba[:, -1], model.predict_proba(x_test), atol=1e-5)
    print(f"{args.cell.upper()} H={args.hidden}, {len(x_test)} test images streamed row by "
          f"row; after the last row the stepper gives the whole-image predictions: {same}")
    for t in range(steps):
        accuracy = np.mean(proba[:, t].argmax(-1) == y_test)
        print(f"  after row {t + 1}: accuracy {accuracy:.3f}")

    # stop each stream at the first row where the model is confident enough
    confident = proba.max(-1) >= args.threshold
    stop = np.where(confident.any(1), confident.argmax(1), steps - 1)
    guesses = proba[np.arange(len(x_test)), stop].argmax(-1)
    print(f"stopping at probability {args.threshold:g}: {np.mean(stop + 1):.2f} rows read "
          f"of {steps} on average, accuracy {np.mean(guesses == y_test):.3f} (all rows: "
          f"{np.mean(proba[:, -1].argmax(-1) == y_test):.3f})")


if __name__ == "__main__":
    main()
