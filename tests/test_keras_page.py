"""The weight conversion of docs/keras.rst gives Keras' outputs with Keras' weights.

The page's ``from_keras`` is executed as written (its one ``code-block:: python``) and
compared with Keras 3 on its torch back end, for every form the page says converts.
Skipped where Keras (or torch) is not installed, or where the docs are not beside the tests.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

# Keras' own variables meet numpy 2's copy keyword: not this test's business
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

PAGE = Path(__file__).resolve().parent.parent / "docs" / "keras.rst"

# (layer class, keyword arguments): every form the page names
FORMS = [
    ("LSTM", {}),
    ("LSTM", {"use_bias": False}),
    ("LSTM", {"go_backwards": True}),
    ("GRU", {}),
    ("GRU", {"reset_after": False}),
    ("GRU", {"use_bias": False}),
    ("GRU", {"go_backwards": True}),
    ("SimpleRNN", {}),
    ("SimpleRNN", {"activation": "relu"}),
]


def _page_function():
    blocks = re.findall(r"\.\. code-block:: python\n\n((?:    .*\n|\n)+)", PAGE.read_text())
    assert len(blocks) == 1, f"{PAGE.name}: {len(blocks)} python code blocks"
    source = "\n".join(line[4:] for line in blocks[0].splitlines())
    namespace: dict = {}
    exec(compile(source, str(PAGE), "exec"), namespace)
    return namespace["from_keras"]


@pytest.fixture(scope="module")
def keras(torch):
    mp = pytest.MonkeyPatch()
    mp.setenv("KERAS_BACKEND", "torch")
    try:
        yield pytest.importorskip("keras")
    finally:
        mp.undo()


@pytest.mark.skipif(not PAGE.is_file(), reason="the docs/ directory is not beside the tests")
@pytest.mark.parametrize("kind, options", FORMS, ids=[f"{k}-{o}" for k, o in FORMS])
def test_from_keras_gives_keras_outputs(keras, kind, options):
    from_keras = _page_function()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 9, 5)).astype(np.float32)
    layer = getattr(keras.layers, kind)(7, return_sequences=True, **options)
    layer.build(x.shape)
    # random biases too: Keras starts them at zero (an LSTM's forget gate at one)
    layer.set_weights([rng.standard_normal(w.shape).astype(np.float32) * 0.5
                       for w in layer.get_weights()])
    expected = layer(x).detach().cpu().numpy()
    y, _ = from_keras(layer)(x)
    if options.get("go_backwards"):
        y = y[:, ::-1]              # Keras returns them in the order of its reversed steps
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=2e-6)


@pytest.mark.skipif(not PAGE.is_file(), reason="the docs/ directory is not beside the tests")
def test_from_keras_refuses_what_it_cannot_convert(keras):
    from_keras = _page_function()
    with pytest.raises(TypeError, match="layer"):
        from_keras(keras.layers.Dense(3))
    hard = keras.layers.LSTM(4, recurrent_activation="hard_sigmoid")
    hard.build((1, 2, 3))
    with pytest.raises(ValueError, match="activations"):
        from_keras(hard)
