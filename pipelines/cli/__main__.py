"""`python -m pipelines.cli`: the same command as the `seamline` script."""

from pipelines.cli.app import app

app()
