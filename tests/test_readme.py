"""README's Python examples run as written."""

import os
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_readme_has_examples():
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index, request):
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
