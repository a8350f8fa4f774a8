"""zppo command-line interface (Typer + rich)."""
