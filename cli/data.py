"""`freehub data`: placeholder until the data commands land."""

import typer

data_app = typer.Typer(help="Build, inspect and preview data sets.", no_args_is_help=True)
