"""Reverse a sequence of tokens: an encoder-decoder (sequence to sequence).

The encoder reads the source tokens; its final state starts the decoder, which writes the
target one token at a time (teacher forcing while training, its own previous token when
decoding greedily).  The target is the source reversed (or copied, with --copy), so the
whole source must pass through the state between the two networks.

    python examples/encoder_decoder_copy.py [--cell lstm] [--hidden 64] [--epochs 12]
                                            [--samples 4000] [--length 6] [--vocab 10]
"""

import argparse
import time

import fastrnn
from fastrnn.data import copy_task, train_test_split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", default="lstm", choices=["rnn", "lstm", "gru"])
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--samples", type=int, default=4000, help="sequences generated")
    parser.add_argument("--length", type=int, default=6, help="tokens per sequence")
    parser.add_argument("--vocab", type=int, default=10, help="tokens 1..vocab-1 (0 starts "
                        "the decoder)")
    parser.add_argument("--copy", action="store_true", help="copy instead of reversing")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    src, tgt = copy_task(args.samples, args.length, args.vocab, seed=args.seed,
                         reverse=not args.copy)
    src_train, src_test, tgt_train, tgt_test = train_test_split(src, tgt, seed=args.seed)

    model = fastrnn.Seq2Seq.build(args.cell, src_vocab=args.vocab, tgt_vocab=args.vocab,
                                  hidden_size=args.hidden, bos_token=0, seed=args.seed)
    start = time.perf_counter()
    history = model.fit(src_train, tgt_train, epochs=args.epochs, batch_size=64,
                        optimizer=fastrnn.optim.Adam(model.parameters(), lr=1e-2),
                        validation_data=(src_test, tgt_test), clip_norm=5.0,
                        seed=args.seed, progress=False)
    seconds = time.perf_counter() - start

    decoded = model.predict(src_test, max_length=args.length)     # greedy, no teacher
    tokens = (decoded == tgt_test).mean()
    whole = (decoded == tgt_test).all(axis=1).mean()
    task = "copy" if args.copy else "reverse"
    print(f"{args.cell.upper()} H={args.hidden}, {task} {args.length} tokens: "
          f"{history.epochs} epochs in {seconds:.1f} s; greedy decoding of "
          f"{len(src_test)} test sequences: {tokens:.1%} of tokens and {whole:.1%} of whole "
          f"sequences right")
    for s, t, d in zip(src_test[:4], tgt_test[:4], decoded[:4]):
        mark = "ok" if (t == d).all() else "wrong"
        print(f"  {' '.join(map(str, s))}  ->  {' '.join(map(str, d))}   ({mark})")


if __name__ == "__main__":
    main()
