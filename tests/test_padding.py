"""Ragged data: fastrnn.data.pad_sequences (Keras' semantics, fastrnn's lengths), the error
a ragged batch gets wherever it is given, and the warning where padding is read as data."""

import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import fastrnn
from fastrnn import data
from fastrnn.data import pad_sequences


def ragged(n=12, features=2, low=2, high=9, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((int(t), features)) for t in rng.integers(low, high, n)]


# ------------------------------------------------------------------------ pad_sequences


def test_padding_and_truncating_sides_as_keras():
    seqs = [[1, 2, 3, 4], [5], [6, 7]]
    x, lengths = pad_sequences(seqs)                    # post padding, to the longest
    assert_array_equal(x, [[1, 2, 3, 4], [5, 0, 0, 0], [6, 7, 0, 0]])
    assert_array_equal(lengths, [4, 1, 2]) and lengths.dtype == np.int64
    x, lengths = pad_sequences(seqs, maxlen=3)          # truncating="pre": the last 3 kept
    assert_array_equal(x, [[2, 3, 4], [5, 0, 0], [6, 7, 0]])
    assert_array_equal(lengths, [3, 1, 2])
    x, _ = pad_sequences(seqs, maxlen=3, truncating="post", value=-1)
    assert_array_equal(x, [[1, 2, 3], [5, -1, -1], [6, 7, -1]])
    x, lengths = pad_sequences(seqs, maxlen=3, padding="pre")
    assert_array_equal(x, [[2, 3, 4], [0, 0, 5], [0, 6, 7]])
    assert lengths is None                              # no lengths count from the start
    x, lengths = pad_sequences(seqs, maxlen=6)
    assert x.shape == (3, 6) and list(lengths) == [4, 1, 2]


def test_dtypes_features_and_values():
    x, lengths = pad_sequences([[1, 2], [3]])
    assert x.dtype.kind == "i"                          # tokens stay integers
    seqs = [np.ones((2, 3), np.float32), np.full((4, 3), 2, np.float32)]
    x, lengths = pad_sequences(seqs, value=np.nan)
    assert x.dtype == np.float32 and x.shape == (2, 4, 3)
    assert np.isnan(x[0, 2:]).all() and (x[1] == 2).all() and list(lengths) == [2, 4]
    x, _ = pad_sequences(seqs, dtype=np.float64, value=0.1)
    assert x.dtype == np.float64 and x[0, 3, 0] == 0.1
    x, _ = pad_sequences((np.arange(3) for _ in range(2)), dtype=np.float32)   # iterables
    assert x.dtype == np.float32 and x.shape == (2, 3)
    x, _ = pad_sequences(np.arange(6).reshape(2, 3))    # an array: its rows
    assert_array_equal(x, [[0, 1, 2], [3, 4, 5]])


@pytest.mark.parametrize("kwargs, error, match", [
    ({"sequences": [[1], []]}, ValueError, r"sequences\[1\] is empty"),
    ({"sequences": []}, ValueError, "at least one sequence"),
    ({"sequences": "abc"}, TypeError, "list of arrays, got str"),
    ({"sequences": [3]}, ValueError, r"sequences\[0\] must be a sequence of steps"),
    ({"sequences": [["a", "b"]]}, TypeError, r"sequences\[0\] must hold numbers"),
    ({"sequences": [np.ones((2, 2)), np.ones((2, 3))]}, ValueError,
     r"sequences\[1\] has steps of shape \(3,\), sequences\[0\] of \(2,\)"),
    ({"sequences": [[1.5]], "dtype": np.int64}, TypeError, "would truncate"),
    ({"sequences": [[1]], "value": 0.5}, ValueError, "value=0.5 cannot be held by dtype"),
    ({"sequences": [[1]], "value": 300, "dtype": np.uint8}, ValueError, "cannot be held"),
    ({"sequences": [[1]], "value": "x"}, TypeError, "value must be a number"),
    ({"sequences": [[1]], "maxlen": 0}, ValueError, "maxlen must be >= 1"),
    ({"sequences": [[1]], "padding": "left"}, ValueError, "padding must be 'pre' or 'post'"),
    ({"sequences": [[1]], "truncating": 1}, ValueError, "truncating must be 'pre' or"),
    ({"sequences": [[1]], "dtype": str}, TypeError, "dtype must be a numeric dtype"),
])
def test_bad_arguments_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        pad_sequences(**kwargs)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("head", ["many_to_one", "many_to_many"])
def test_padded_batch_with_lengths_equals_each_sequence_alone(cell, head):
    """What pad_sequences gives, with its lengths, is each sequence as if it were alone."""
    model = fastrnn.SequenceModel.build(cell, input_size=2, hidden_size=5, output_size=3,
                                        head=head, dtype=np.float64, seed=0)
    seqs = ragged()
    x, lengths = pad_sequences(seqs, value=np.nan)      # nan: no padded step is read
    out = model.forward(x, lengths)
    for i, s in enumerate(seqs):
        alone = model.forward(s[None])[0]
        got = out[i] if head == "many_to_one" else out[i, :len(s)]
        assert_allclose(got, alone, rtol=1e-12, atol=1e-12)


# -------------------------------------------------------- a ragged batch gets told how


RAGGED = "rectangular array of numbers, got rows of different lengths.*pad_sequences"


def test_a_ragged_batch_names_pad_sequences_everywhere():
    seqs = ragged(4)
    model = fastrnn.SequenceModel.build("gru", input_size=2, hidden_size=4, output_size=3,
                                        head="many_to_one", seed=0)
    y = np.zeros(4, np.int64)
    for call in (lambda: model.predict(seqs), lambda: model.fit(seqs, y, progress=False),
                 lambda: model.evaluate(seqs, y), lambda: fastrnn.LSTM(2, 3)(seqs),
                 lambda: fastrnn.Sequential([fastrnn.GRU(2, 3), fastrnn.TimePooling()])(seqs),
                 lambda: fastrnn.Sequential([fastrnn.GRU(2, 3)]).forward(seqs)):
        with pytest.raises(ValueError, match=RAGGED):
            call()
    tokens = [[1, 2, 3], [4]]
    tm = fastrnn.SequenceModel.build("gru", vocab_size=5, hidden_size=4, output_size=5,
                                     seed=0)
    for call in (lambda: tm.predict(tokens), lambda: fastrnn.Embedding(5, 2)(tokens)):
        with pytest.raises(ValueError, match=RAGGED):
            call()
    with pytest.raises(TypeError, match=r"array of arrays \(dtype object\).*pad_sequences"):
        model.predict(np.array(seqs, dtype=object))


# --------------------------------------------------- padding read as data gets a warning


def padded_batch():
    return pad_sequences(ragged(40, low=5, high=40, seed=1))


def test_padding_read_as_data_is_warned_at_the_callers_line():
    x, lengths = padded_batch()
    model = fastrnn.SequenceModel.build("lstm", input_size=2, hidden_size=4, output_size=2,
                                        head="many_to_one", seed=0)
    y = np.zeros(len(x), np.int64)
    seq = fastrnn.Sequential([fastrnn.LSTM(2, 4), fastrnn.TimePooling(), fastrnn.Linear(4, 2)],
                             loss="cross_entropy")
    for call in (lambda: model.predict(x), lambda: model.evaluate(x, y),
                 lambda: model.fit(x, y, epochs=1, progress=False), lambda: seq.predict(x),
                 lambda: seq.fit(x, y, epochs=1, progress=False)):
        with pytest.warns(fastrnn.PaddingWarning, match=r"x looks padded and no lengths were "
                          r"given.*steps of 0.*Pass lengths=") as record:
            call()
        assert record[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.predict(x, lengths)                       # lengths given: the padding skipped
        model.predict(x, np.full(len(x), x.shape[1]))   # every step is data: said so
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=fastrnn.PaddingWarning)
            model.predict(x)                            # silenced


def test_token_padding_is_warned_too():
    x = data.marker_retrieval(200, seed=0)[0]          # variable-length, padded with 0
    model = fastrnn.SequenceModel.build("gru", vocab_size=16, hidden_size=4, output_size=3,
                                        head="many_to_one", seed=0)
    with pytest.warns(fastrnn.PaddingWarning, match="steps of 0"):
        model.predict(x)


def _mnist_like():
    """Images read row by row whose top and bottom rows are blank in every image."""
    rng = np.random.default_rng(0)
    images = rng.random((300, 28, 28))
    for im in images:
        im[28 - rng.integers(3, 8):] = 0
        im[:rng.integers(2, 6)] = 0
    return images


def _ordinary_data():
    text = data.load_text()
    tokens = data.CharVocab(text).encode(text)
    yield "digits", data.load_digits()[0]
    for T in (8, 16, 64):
        yield f"text windows of {T}", data.char_windows(tokens, T)[0]
    yield "adding", data.adding_problem(500, 30, seed=0)[0]
    yield "sine", data.sine_waves(300, 50, seed=0)[0]
    yield "copy task", data.copy_task(300, 10, 8, seed=0)[0]
    yield "images with blank rows", _mnist_like()
    rng = np.random.default_rng(0)
    yield "a quantised random walk", np.round(np.cumsum(rng.standard_normal((300, 50, 1)),
                                                        axis=1))
    yield "a small batch of random tokens", np.random.default_rng(0).integers(0, 9, (3, 8))
    yield "binary steps", (rng.random((300, 40, 3)) < 0.5).astype(np.float32)
    yield "a fixed layout ending in zeros", np.concatenate(
        [rng.standard_normal((40, 10, 2)), np.zeros((40, 30, 2))], axis=1)


@pytest.mark.parametrize("name, x", list(_ordinary_data()), ids=lambda v: v
                         if isinstance(v, str) else "")
def test_ordinary_data_gets_no_warning(name, x):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fastrnn._validate.warn_if_padded(x)
