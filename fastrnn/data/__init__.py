"""Bundled data sets and generators of synthetic sequence tasks.

* :func:`load_digits` -- the 8x8 handwritten digits (UCI "Optical Recognition of
  Handwritten Digits", test part, 1797 images; see ``README.md`` beside this file), read
  by a recurrent network one 8-pixel row per time step.
* :func:`load_text` -- a public-domain English text (the Book of Genesis, King James
  Version, about 200 kB) for character-level language models.
* :func:`adding_problem`, :func:`sine_waves`, :func:`copy_task` -- classic synthetic
  benchmarks of memory over time, generated from a seed;
* :func:`marker_retrieval` -- variable-length token sequences whose label is the token
  after a marker (what attention pooling finds at once and a last-step readout slowly);
* :func:`pad_sequences` -- sequences of different lengths as one padded array and their
  lengths, what the models and layers take.
"""

from __future__ import annotations

import gzip
import math
import numbers
from importlib import resources

import numpy as np

from .._validate import as_array, positive_int, seed_value

__all__ = ["load_digits", "load_text", "CharVocab", "char_windows", "train_test_split",
           "adding_problem", "sine_waves", "copy_task", "marker_retrieval", "pad_sequences"]


def load_digits(dtype=np.float32):
    """``(images, labels)``: images (1797, 8, 8) scaled to [0, 1], labels (1797,) in 0..9.

    Read row by row, an image is a sequence of 8 steps of 8 features.

    >>> from fastrnn.data import load_digits
    >>> images, labels = load_digits()
    >>> images.shape, labels.shape, int(labels.max())
    ((1797, 8, 8), (1797,), 9)
    """
    with resources.files(__package__).joinpath("digits.csv.gz").open("rb") as raw:
        table = np.loadtxt(gzip.open(raw), delimiter=",", dtype=np.int64)
    images = (table[:, :64] / 16.0).astype(dtype).reshape(-1, 8, 8)
    return images, table[:, 64].copy()


def load_text() -> str:
    """The bundled English text (Genesis, King James Version) as one string.

    >>> from fastrnn.data import load_text
    >>> load_text()[:20].split()[:2]
    ['THE', 'FIRST']
    """
    return resources.files(__package__).joinpath("genesis.txt").read_text(encoding="utf-8")


class CharVocab:
    """The characters of a text as tokens 0..size-1 (sorted, so the mapping is stable).

    >>> from fastrnn.data import CharVocab
    >>> vocab = CharVocab("hello")
    >>> vocab.size
    4
    >>> vocab.decode(vocab.encode("hell"))
    'hell'
    """

    def __init__(self, text: str):
        if not text:
            raise ValueError("text must not be empty")
        self.chars = sorted(set(text))
        self._index = {c: i for i, c in enumerate(self.chars)}

    @property
    def size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        try:
            return np.fromiter((self._index[c] for c in text), dtype=np.int64, count=len(text))
        except KeyError as err:
            raise ValueError(f"character {err.args[0]!r} is not in the vocabulary") from None

    def decode(self, tokens) -> str:
        return "".join(self.chars[int(t)] for t in np.asarray(tokens).reshape(-1))


def char_windows(tokens: np.ndarray, length: int, step: int | None = None):
    """Inputs and next-token targets of a language model: windows ``x[i] =
    tokens[s:s+length]``, ``y[i] = tokens[s+1:s+length+1]`` at starts ``s`` every ``step``
    (default ``length``).  Returns ``(x, y)`` of shape (n, length).

    >>> import numpy as np
    >>> from fastrnn.data import char_windows
    >>> x, y = char_windows(np.arange(10), 4)
    >>> x[0], y[0]
    (array([0, 1, 2, 3]), array([1, 2, 3, 4]))
    """
    length = positive_int(length, "length")
    step = positive_int(step or length, "step")
    tokens = np.asarray(tokens)
    starts = np.arange(0, len(tokens) - length - 1 + 1, step)
    if starts.size == 0:
        raise ValueError(f"tokens must hold more than length={length} items")
    idx = starts[:, None] + np.arange(length)[None, :]
    return tokens[idx], tokens[idx + 1]


def train_test_split(*arrays, test_fraction: float = 0.2, seed: int | None = 0):
    """Split arrays (same first axis) into a shuffled train and test part:
    ``a_train, a_test, b_train, b_test, ...``.

    >>> import numpy as np
    >>> from fastrnn.data import train_test_split
    >>> a_train, a_test, b_train, b_test = train_test_split(np.arange(10), np.arange(10), seed=0)
    >>> len(a_train), len(a_test), bool((a_train == b_train).all())
    (8, 2, True)
    """
    if not arrays:
        raise ValueError("train_test_split needs at least one array")
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise ValueError("all arrays must have the same length")
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    order = np.random.default_rng(seed_value(seed)).permutation(n)
    n_test = max(1, int(round(n * test_fraction)))
    test, train = order[:n_test], order[n_test:]
    out = []
    for a in arrays:
        a = np.asarray(a)
        out += [a[train], a[test]]
    return out


def adding_problem(n: int, steps: int, seed: int | None = None, dtype=np.float32):
    """The adding problem (Hochreiter & Schmidhuber): ``x`` (n, steps, 2) holds random
    values in [0, 1) and a marker channel with exactly two ones, one in each half; the
    target ``y`` (n, 1) is the sum of the two marked values.  Predicting the mean (1.0)
    gives an MSE of about 0.167.

    >>> from fastrnn.data import adding_problem
    >>> x, y = adding_problem(16, 30, seed=0)
    >>> x.shape, y.shape
    ((16, 30, 2), (16, 1))
    """
    n, steps = positive_int(n, "n"), positive_int(steps, "steps")
    if steps < 2:
        raise ValueError(f"steps must be >= 2, got {steps}")
    rng = np.random.default_rng(seed_value(seed))
    values = rng.random((n, steps))
    half = steps // 2
    first = rng.integers(0, half, n)
    second = rng.integers(half, steps, n)
    marks = np.zeros((n, steps))
    marks[np.arange(n), first] = 1
    marks[np.arange(n), second] = 1
    x = np.stack([values, marks], axis=-1).astype(dtype)
    y = (values[np.arange(n), first] + values[np.arange(n), second])[:, None].astype(dtype)
    return x, y


def sine_waves(n: int, steps: int, components: int = 1, noise: float = 0.0,
               seed: int | None = None, dtype=np.float32):
    """Next-step forecasting of sums of sines with random frequency and phase:
    ``x`` (n, steps, 1) the signal, ``y`` (n, steps, 1) the signal one step later.

    >>> from fastrnn.data import sine_waves
    >>> x, y = sine_waves(4, 50, seed=0)
    >>> x.shape, y.shape
    ((4, 50, 1), (4, 50, 1))
    """
    n, steps = positive_int(n, "n"), positive_int(steps, "steps")
    components = positive_int(components, "components")
    rng = np.random.default_rng(seed_value(seed))
    t = np.arange(steps + 1)[None, :, None]
    freq = rng.uniform(0.02, 0.2, (n, 1, components))
    phase = rng.uniform(0, 2 * np.pi, (n, 1, components))
    amp = rng.uniform(0.5, 1.0, (n, 1, components)) / components
    s = (amp * np.sin(2 * np.pi * freq * t + phase)).sum(-1)
    if noise:
        s = s + noise * rng.standard_normal(s.shape)
    s = s[..., None].astype(dtype)
    return s[:, :-1], s[:, 1:]


def copy_task(n: int, length: int, vocab: int, seed: int | None = None, reverse: bool = False):
    """Sequences of tokens 1..vocab-1 to copy (or reverse); token 0 is left free as the
    decoder's start token.  Returns ``(src, tgt)``, both (n, length) int64.

    >>> from fastrnn.data import copy_task
    >>> src, tgt = copy_task(3, 5, vocab=10, seed=0, reverse=True)
    >>> bool((tgt == src[:, ::-1]).all())
    True
    """
    n, length, vocab = positive_int(n, "n"), positive_int(length, "length"), \
        positive_int(vocab, "vocab")
    if vocab < 2:
        raise ValueError(f"vocab must be >= 2, got {vocab}")
    rng = np.random.default_rng(seed_value(seed))
    src = rng.integers(1, vocab, (n, length))
    return src, (src[:, ::-1].copy() if reverse else src.copy())


def marker_retrieval(n: int, steps: int = 40, vocab: int = 16, seed: int | None = None):
    """Token sequences of ``steps // 2`` to ``steps`` valid steps over the tokens
    2..vocab-1, with one marker (token 1) at a random valid step but the last; the label
    is the token after the marker, minus 2 (``vocab - 2`` classes).  Padding is token 0.
    Returns ``(tokens, labels, lengths)``: (n, steps), (n,) and (n,) int64.

    >>> from fastrnn.data import marker_retrieval
    >>> tokens, labels, lengths = marker_retrieval(4, steps=10, seed=0)
    >>> tokens.shape, int(labels.max()) < 14, int(lengths.min()) >= 5
    ((4, 10), True, True)
    >>> row = list(tokens[0, :lengths[0]])
    >>> bool(row[row.index(1) + 1] - 2 == labels[0])
    True
    """
    n, steps, vocab = positive_int(n, "n"), positive_int(steps, "steps"), \
        positive_int(vocab, "vocab")
    if steps < 4:
        raise ValueError(f"steps must be >= 4, got {steps}")
    if vocab < 4:
        raise ValueError(f"vocab must be >= 4, got {vocab}")
    rng = np.random.default_rng(seed_value(seed))
    lengths = rng.integers(steps // 2, steps + 1, n)
    tokens = rng.integers(2, vocab, (n, steps))
    marker = (rng.random(n) * (lengths - 1)).astype(np.int64)   # in [0, lengths - 2]
    rows = np.arange(n)
    tokens[rows, marker] = 1
    tokens[np.arange(steps)[None, :] >= lengths[:, None]] = 0
    return tokens, tokens[rows, marker + 1] - 2, lengths


def _sides(padding: str, truncating: str) -> None:
    for name, side in (("padding", padding), ("truncating", truncating)):
        if side not in ("pre", "post"):
            raise ValueError(f"{name} must be 'pre' or 'post', got {side!r}")


def pad_sequences(sequences, maxlen: int | None = None, dtype=None, padding: str = "post",
                  truncating: str = "pre", value=0.0):
    """``(x, lengths)``: sequences of different lengths as one array ``x`` (N, T, ...)
    and each one's number of steps in it, ``lengths`` (N,) int64 -- what ``fit``,
    ``predict``, ``evaluate`` and the layers take (``model.fit(x, y, lengths)``).

    As Keras' ``pad_sequences``: each sequence is an array of T_i steps (tokens (T_i,), or
    (T_i, F...) with the same F... in all); ``T`` is ``maxlen``, else the longest;
    sequences longer than ``maxlen`` lose steps at their start (``truncating="pre"``) or
    their end (``"post"``); shorter ones get steps of ``value`` at their end
    (``padding="post"``, the default here: Keras' default is ``"pre"``) or their start
    (``"pre"``).  ``dtype`` defaults to the sequences' common dtype (integer tokens stay
    integers, for an embedding); ``value`` must be representable in it.

    ``lengths`` counts the valid steps from the start of each row, as fastrnn's layers
    read them (the padded steps are skipped and the state is each sequence's own last
    one): that holds for ``padding="post"`` only.  With ``padding="pre"`` no lengths say
    where a row starts, so ``lengths`` is None and the padding is read as data, as a
    Keras layer without a mask reads it; prefer ``"post"``.  An empty sequence is refused
    (a layer needs at least one step per row).

    >>> import numpy as np
    >>> from fastrnn.data import pad_sequences
    >>> x, lengths = pad_sequences([[1, 2, 3], [4], [5, 6]])
    >>> x
    array([[1, 2, 3],
           [4, 0, 0],
           [5, 6, 0]])
    >>> lengths
    array([3, 1, 2])
    >>> x, lengths = pad_sequences([np.ones((4, 2)), np.ones((6, 2))], maxlen=5)
    >>> x.shape, lengths                # the second lost its first step
    ((2, 5, 2), array([4, 5]))
    >>> pad_sequences([[1, 2], [3]], padding="pre")
    (array([[1, 2],
           [0, 3]]), None)
    """
    _sides(padding, truncating)
    if isinstance(sequences, (str, bytes)) or not hasattr(sequences, "__iter__"):
        raise TypeError(f"sequences must be a list of arrays, got "
                        f"{type(sequences).__name__}")
    arrays: list[np.ndarray] = []
    for i, seq in enumerate(sequences):
        a = as_array(seq, f"sequences[{i}]")
        if a.ndim == 0:
            raise ValueError(f"sequences[{i}] must be a sequence of steps, got a scalar")
        if a.dtype.kind not in "fiub":
            raise TypeError(f"sequences[{i}] must hold numbers, got dtype {a.dtype}")
        if a.shape[0] == 0:
            raise ValueError(f"sequences[{i}] is empty: every sequence needs at least one "
                             f"step (drop the empty ones)")
        if arrays and a.shape[1:] != arrays[0].shape[1:]:
            raise ValueError(f"sequences[{i}] has steps of shape {a.shape[1:]}, "
                             f"sequences[0] of {arrays[0].shape[1:]}: every step must have "
                             f"the same features")
        arrays.append(a)
    if not arrays:
        raise ValueError("sequences must hold at least one sequence")
    T = max(len(a) for a in arrays) if maxlen is None else positive_int(maxlen, "maxlen")
    dt = np.result_type(*arrays) if dtype is None else np.dtype(dtype)
    if dt.kind not in "fiub":
        raise TypeError(f"dtype must be a numeric dtype, got {dt}")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"value must be a number, got {type(value).__name__}")
    number = float(value)
    if dt.kind in "iub" and not (math.isfinite(number) and number == round(number) and
                                 np.can_cast(np.min_scalar_type(round(number)), dt)):
        raise ValueError(f"value={value!r} cannot be held by dtype {dt} (integer tokens "
                         f"take an integer value that fits)")
    x = np.full((len(arrays), T) + arrays[0].shape[1:], value, dt)
    lengths = np.empty(len(arrays), np.int64)
    for i, a in enumerate(arrays):
        if not np.can_cast(a.dtype, dt, casting="same_kind"):
            raise TypeError(f"sequences[{i}] has dtype {a.dtype}, which dtype={dt} would "
                            f"truncate (give a float dtype, or round the values first)")
        a = a[-T:] if truncating == "pre" else a[:T]
        n = lengths[i] = len(a)
        if padding == "post":
            x[i, :n] = a
        else:
            x[i, T - n:] = a
    return x, (lengths if padding == "post" else None)
