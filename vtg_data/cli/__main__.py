"""``python -m vtg_data.cli``: the same command line (for ``accelerate launch -m`` and ``torchrun -m``)."""

from vtg_data.cli import app

app()
