"""Run the command line with `python -m app.cli`."""

from app.cli.main import main

main()
