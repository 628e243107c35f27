"""README's Python examples run as written."""

import os
import re
from pathlib import Path

import pytest

import fastrnn

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_readme_has_examples():
    assert len(BLOCKS) >= 5


def learns_sines(out):
    """The many-to-many example: its mse falls by far, below predicting no change."""
    m = re.match(r"mse ([\d.]+) -> ([\d.]+), held out ([\d.]+); predicting no change: "
                 r"([\d.]+)", out)
    first, last, held_out, no_change = map(float, m.groups())
    assert last < first / 10 and held_out < no_change / 10


def writes_english(out):
    """The generation example: its loss falls, and most of what it writes are words of
    the text it read."""
    m = re.match(r"loss ([\d.]+) -> ([\d.]+) nats a character\n(.*)", out, re.S)
    first, last = float(m[1]), float(m[2])
    assert last < 0.5 * first
    words = re.findall(r"[A-Za-z]+", m[3])
    known = set(re.findall(r"[A-Za-z]+", fastrnn.data.load_text()[:20000]))
    assert len(words) >= 10 and sum(w in known for w in words) >= 0.8 * len(words)


def keeps_accuracy(out):
    """The int8/bf16 example: the model trained in bf16 learns the digits, and its int8
    copy is within half a point of its float32 accuracy."""
    m = re.match(r"trained in bf16: accuracy ([\d.]+) in float32, ([\d.]+) in int8", out)
    float32, int8 = float(m[1]), float(m[2])
    assert float32 > 0.9 and abs(int8 - float32) <= 0.005


# what an example prints, checked: README states it
CLAIMS = {"sine_waves(256": learns_sines, 'generate(vocab.encode("And God said")':
          writes_english, "fastrnn.quantize(model)": keeps_accuracy}


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index, request, capsys):
    if "import torch" in BLOCKS[index]:
        request.getfixturevalue("torch")      # skips without torch, fails if CI requires it
    if "import onnxruntime" in BLOCKS[index]:
        try:
            import onnx  # noqa: F401
            import onnxruntime  # noqa: F401
        except ImportError as exc:
            if os.environ.get("FASTRNN_REQUIRE_ONNX", "") == "1":
                pytest.fail(f"FASTRNN_REQUIRE_ONNX=1 but onnx/onnxruntime cannot be "
                            f"imported: {exc}", pytrace=False)
            pytest.skip(f"onnx/onnxruntime not installed: {exc}")
    exec(compile(BLOCKS[index], f"README.md[python block {index}]", "exec"), {})
    out = capsys.readouterr().out
    for marker, check in CLAIMS.items():
        if marker in BLOCKS[index]:
            check(out)


def test_readme_claims_find_their_examples():
    for marker in CLAIMS:
        assert sum(marker in block for block in BLOCKS) == 1, marker
