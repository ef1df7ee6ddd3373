"""``adatp bench ...`` commands (registered on the main app in :mod:`adatp.cli`)."""

from __future__ import annotations

import typer

app = typer.Typer(name="bench", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
