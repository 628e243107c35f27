"""Forecast a signal one step ahead: a many-to-many recurrent network on sums of sines.

At every time step t the network has read x[0..t] and predicts x[t+1] (a readout at each
step, trained with the mean squared error).  Prints the test error next to the naive
forecast "the next value equals this one", then streams one test sequence through the
model one step at a time (as a live signal would arrive) and checks that it gives the
same forecasts as the whole-sequence call.

    python examples/many_to_many_sine.py [--cell gru] [--hidden 32] [--epochs 30]
                                         [--samples 800] [--steps 50] [--plot sine.png]
"""

import argparse
import time

import numpy as np

import fastrnn
from fastrnn.data import sine_waves, train_test_split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", default="gru", choices=["rnn", "lstm", "gru"])
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--samples", type=int, default=800, help="sequences generated")
    parser.add_argument("--steps", type=int, default=50, help="time steps per sequence")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", help="draw forecasts against the truth here (matplotlib)")
    args = parser.parse_args()

    # x[n, t] is the signal, y[n, t] = x[n, t + 1]: (N, T, 1) each
    x, y = sine_waves(args.samples, args.steps, components=2, seed=args.seed)
    x_train, x_test, y_train, y_test = train_test_split(x, y, seed=args.seed)

    model = fastrnn.SequenceModel.build(args.cell, input_size=1, hidden_size=args.hidden,
                                        output_size=1, head="many_to_many", loss="mse",
                                        seed=args.seed)
    start = time.perf_counter()
    history = model.fit(x_train, y_train, epochs=args.epochs, batch_size=32,
                        optimizer=fastrnn.optim.Adam(model.parameters(), lr=1e-2),
                        validation_data=(x_test, y_test), clip_norm=5.0, seed=args.seed,
                        progress=False)
    seconds = time.perf_counter() - start
    mse = model.evaluate(x_test, y_test)["loss"]
    naive = float(np.mean((x_test - y_test) ** 2))
    print(f"{args.cell.upper()} H={args.hidden}: {history.epochs} epochs in {seconds:.1f} s; "
          f"test MSE {mse:.5f} (naive forecast x[t+1] = x[t]: {naive:.5f}, "
          f"{naive / mse:.1f}x worse)")

    # streaming: one step at a time, the state kept between calls
    stepper = model.stepper(batch_size=1)
    seq = x_test[0]                                   # (T, 1)
    streamed = np.stack([stepper.step(seq[t][None, :])[0].copy() for t in range(len(seq))])
    whole = model.predict(x_test[:1])[0]
    print(f"streamed one test sequence step by step: largest difference from the "
          f"whole-sequence forecasts {np.abs(streamed - whole).max():.2e}")
    print("t     x[t]   forecast x[t+1]   truth")
    for t in range(min(5, len(seq))):
        print(f"{t:<3} {seq[t, 0]:+.4f}   {streamed[t, 0]:+.4f}           {y_test[0, t, 0]:+.4f}")

    if args.plot:
        from fastrnn import plot
        try:
            path = plot.forecast(x_test[:3], y_test[:3], model.predict(x_test[:3]), args.plot,
                                 title=f"{args.cell.upper()} {args.hidden}: one-step forecasts")
            print(f"plot: {path}")
        except plot.PlotUnavailable as err:
            print(f"note: {err}")


if __name__ == "__main__":
    main()
