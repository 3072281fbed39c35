"""`python -m fnstage ...` is the `fnstage` command."""

from fnstage.cli.main import app

app()
