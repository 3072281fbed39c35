"""`python -m fnstage ...` is the `fnstage` command."""

from fnstage.cli.entry import main

main()
