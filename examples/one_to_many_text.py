"""Write text one character at a time: a character-level language model of Genesis.

Trained as many-to-many (after each character, predict the next one); used as
one-to-many: from a short prime, each character the model draws is fed back as its next
input.  The model is saved with its vocabulary (the ``extra`` of the model file), reloaded,
and made to write a passage.

    python examples/one_to_many_text.py [--cell gru] [--hidden 128] [--epochs 8]
                                        [--max-chars N] [--length 400] [--temperature 0.7]
"""

import argparse
import math
import os
import tempfile
import time

import fastrnn
from fastrnn.data import CharVocab, char_windows, load_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", default="gru", choices=["rnn", "lstm", "gru"])
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=64, help="characters per window")
    parser.add_argument("--max-chars", type=int, default=None,
                        help="train on the first N characters only")
    parser.add_argument("--prime", default="And God said")
    parser.add_argument("--length", type=int, default=400, help="characters to write")
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "genesis.npz"))
    args = parser.parse_args()

    text = load_text()
    vocab = CharVocab(text)                       # every character of the book
    tokens = vocab.encode(text[:args.max_chars])
    cut = int(len(tokens) * 0.9)                  # the last 10% is held out
    x_train, y_train = char_windows(tokens[:cut], args.seq_len)
    x_test, y_test = char_windows(tokens[cut:], args.seq_len)

    model = fastrnn.SequenceModel.build(args.cell, vocab_size=vocab.size, embedding_dim=32,
                                        hidden_size=args.hidden, output_size=vocab.size,
                                        head="one_to_many", seed=args.seed)
    optimizer = fastrnn.optim.Adam(model.parameters(), lr=4e-3)
    start = time.perf_counter()
    history = model.fit(x_train, y_train, epochs=args.epochs, batch_size=64,
                        optimizer=optimizer, validation_data=(x_test, y_test),
                        clip_norm=5.0, seed=args.seed, progress=False)
    result = model.evaluate(x_test, y_test)
    print(f"{args.cell.upper()} H={args.hidden}: {history.epochs} epochs over "
          f"{len(x_train)} windows of {args.seq_len} characters in "
          f"{time.perf_counter() - start:.1f} s; held-out loss {result['loss']:.3f} nats per "
          f"character (perplexity {math.exp(result['loss']):.1f} of {vocab.size}), next "
          f"character right {result['accuracy']:.1%} of the time")

    # the vocabulary travels with the weights
    fastrnn.save(model, args.out, optimizer, extra={"vocab": "".join(vocab.chars)})
    model, _, extra = fastrnn.load_checkpoint(args.out)
    vocab = CharVocab(extra["vocab"])
    print(f"saved to {args.out} and reloaded")

    generated = model.generate(vocab.encode(args.prime), args.length,
                               temperature=args.temperature, seed=args.seed)
    print(f"\n{args.prime}{vocab.decode(generated)}")


if __name__ == "__main__":
    main()
