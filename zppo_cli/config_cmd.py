"""`zppo config show`: the dry run of configuration — the resolved config with, per key, where its value came from."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from zppo_cli.options import ConfigFiles, Method, Scale, Set, console, overrides, user_errors

app = typer.Typer(no_args_is_help=True, help="Resolved configuration: `zppo config show --config FILE --set a.b=v`.")


@app.command("show")
def show(
    scale: Optional[str] = Scale,
    method: Optional[str] = Method,
    config: Optional[list[Path]] = ConfigFiles,
    set_: Optional[list[str]] = typer.Option(None, "--set", help=Set.help),
) -> None:
    """Print the resolved config as YAML, each value followed by where it came from: `default` (the schema),
    `preset NAME`, `FILE:LINE` or `--set key=value`. Nothing is run or created."""
    with user_errors():
        from zppo_core.config import resolve_config

        resolved = resolve_config(scale, method=method, overrides=overrides(set_), files=list(config or []))
    console.print(resolved.annotated(), highlight=False, markup=False, soft_wrap=True, end="")
