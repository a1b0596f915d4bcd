"""``python -m attnsvm`` is the ``attnsvm`` command."""

from .cli import app

app(prog_name="attnsvm")
