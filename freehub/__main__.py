"""`python -m freehub` runs the command line."""

from freehub.cli.app import main

main()
