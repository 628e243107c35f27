"""The version of fastrnn: this line is the one place it lives (``pyproject.toml`` reads it
statically, the package and the files it writes import it)."""

__version__ = "0.1.0"
