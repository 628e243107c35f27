"""The table of ``model.summary()``: each part's name, type, output shape and parameter
count, then the total (Keras's layout, in plain ASCII)."""

from __future__ import annotations


def shape_text(shape) -> str:
    """``(None, None, 16)`` for a shape whose None axes any size fills; a string as it
    is."""
    if isinstance(shape, str):
        return shape
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + \
        ("," if len(shape) == 1 else "") + ")"


def summary_table(title: str, rows, itemsize: int) -> str:
    """The summary of a model named ``title`` from ``rows`` of ``(name, type, output
    shape, parameter count)``; ``itemsize`` the bytes of one parameter.

    >>> from fastrnn._summary import summary_table
    >>> print(summary_table("Tiny", [("rnn", "GRU", (None, None, 4), 108)], 4))
    Model: Tiny
    _________________________________________________
    Layer (type)        Output shape          Param #
    =================================================
    rnn (GRU)           (None, None, 4)           108
    =================================================
    Total params: 108 (432 B)
    """
    cells = [(f"{name} ({kind})", shape_text(shape), f"{count:,}")
             for name, kind, shape, count in rows]
    head = ("Layer (type)", "Output shape", "Param #")
    w0 = max(len(c[0]) for c in cells + [head]) + 8
    w1 = max(len(c[1]) for c in cells + [head]) + 4
    w2 = max(len(c[2]) for c in cells + [head]) + 3
    line = w0 + w1 + w2

    def row(c):
        return f"{c[0]:<{w0}}{c[1]:<{w1}}{c[2]:>{w2}}".rstrip()

    total = sum(r[3] for r in rows)
    size = total * itemsize
    unit = next((f"{size / d:.1f} {u}" for d, u in ((2**20, "MiB"), (2**10, "KiB"))
                 if size >= d), f"{size} B")
    return "\n".join([f"Model: {title}", "_" * line, row(head), "=" * line]
                     + [row(c) for c in cells]
                     + ["=" * line, f"Total params: {total:,} ({unit})"])
