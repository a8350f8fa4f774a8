"""The `zppo` command. Heavy imports (torch, transformers, mlflow) happen inside command bodies only."""

from __future__ import annotations

import os
from typing import Optional

import typer

from zppo_cli import (config_cmd, eval_cmd, export_cmd, jobs_cmd, report_cmd, reproduce_cmd, runs_cmd,
                       serve_cmd, sweep_cmd, sync_cmd, train_cmd)
from zppo_cli.options import console, user_errors

app = typer.Typer(
    name="zppo",
    help="ZPPO: post-train small (vision-)language models with the teacher in prompts, not gradients.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

app.command("train")(train_cmd.train)
app.command("prepare")(train_cmd.prepare)
app.command("eval")(eval_cmd.eval_)
app.command("export")(export_cmd.export)
app.command("sync")(sync_cmd.sync)
app.add_typer(jobs_cmd.app, name="jobs")
app.add_typer(sweep_cmd.app, name="sweep")
app.add_typer(serve_cmd.app, name="serve")
app.add_typer(reproduce_cmd.app, name="reproduce")
app.add_typer(runs_cmd.app, name="runs")
app.command("report")(report_cmd.report)
app.add_typer(config_cmd.app, name="config")


@app.command("ls")
def ls(
    what: Optional[str] = typer.Argument(None, help="presets | methods | families | suites | sweeps (default: all)."),
) -> None:
    """List presets (scales), training methods and task families."""
    from rich.table import Table

    with user_errors():
        from zppo_core.config import ConfigError
        from zppo_core.config.methods import METHOD_HELP

        sections = ("presets", "methods", "families", "suites", "sweeps")
        if what is not None and what not in sections:
            raise ConfigError(f"unknown list '{what}'; valid: {', '.join(sections)}")

        def show(title: str, columns: tuple[str, str], rows: dict[str, str]) -> None:
            t = Table(title=title)
            for c in columns:
                t.add_column(c)
            for name, desc in rows.items():
                t.add_row(name, desc)
            console.print(t)

        if what in (None, "presets"):
            from rich.markup import escape

            from zppo_core.config import sources

            rows = {}
            for name, preset in sources.find_presets().items():
                layer = sources.read_preset(preset)
                rows[name] = escape(layer.description if preset.builtin else
                                    f"{layer.description} (based on {layer.base}; {preset.path})".lstrip())
            show("presets (--scale)", ("scale", "what it runs"), rows)
            console.print("  user and cluster presets: YAML files in $ZPPO_PRESETS (dirs separated by ':') or "
                          "~/.config/zppo/presets/", style="dim", highlight=False, soft_wrap=True)
            for name, paths in sources.shadowed_presets().items():
                console.print(f"  {name}: also in {', '.join(map(str, paths))} (hidden by the earlier directory)",
                              highlight=False, soft_wrap=True)
        if what in (None, "methods"):
            show("methods (--method)", ("method", "what it does"), METHOD_HELP)
        if what in (None, "families"):
            from zppo_core.tasks import list_families

            show("task families (tiny scale)", ("family", "description"), list_families())
        if what in (None, "suites"):
            from zppo_core.suites.benchmarks import SUITES

            show("eval suites (zppo eval --suite)", ("suite", "benchmarks"), {
                "tiny": "offline: held-out questions of the run's training families (e.g. modsum)",
                "tiny-ood": "offline: each training family's out-of-distribution counterpart (modsum -> modsum_long)",
                "tiny-vl": "offline, images: held-out questions of the visual families (count, digits, bars)",
                "tiny-vl-ood": "offline, images: their ood counterparts with more cells (count -> count_long)",
                "tiny-vl-blank": "offline control: tiny-vl with white images (at or below chance)",
                **{name: ", ".join(b.name for b in benches) for name, benches in SUITES.items()}})
        if what in (None, "sweeps"):
            from zppo_cli.orchestration.sweep_spec import list_sweeps, sweeps_dir

            show(f"sweeps (zppo sweep NAME; definitions in {sweeps_dir()})", ("sweep", "what it searches"),
                 list_sweeps())


@app.command("ui")
def ui(
    port: int = typer.Option(5000, "--port", help="Port for the MLflow UI."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on (default: this machine only; "
                             "0.0.0.0 opens the UI, which has no login, and the store to the network)."),
    store: str = typer.Option("mlruns", "--store", help="Directory of the embedded store (default ./mlruns)."),
    experiment: str = typer.Option("zppo", "--experiment", "-e", help="Experiment whose runs view is printed."),
) -> None:
    """Open the MLflow UI on the local store (or $MLFLOW_TRACKING_URI when set) and print the runs view's URL."""
    import sys
    from pathlib import Path

    from zppo_cli.options import bad_input

    uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(store).resolve() / 'mlflow.db'}"
    if uri.startswith(("http://", "https://")):
        raise bad_input(f"MLFLOW_TRACKING_URI is a tracking server ({uri}); open it in a browser instead")
    db = Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None
    if db is not None and not db.is_file():
        raise bad_input(f"no MLflow store at {db}; train a run first (zppo train) or pass --store DIR")
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    view = _runs_view(uri, experiment)
    console.print(f"MLflow UI on {url}/{view} (store {uri}); Ctrl-C to stop", highlight=False, soft_wrap=True)
    sys.stdout.flush()
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    # the mlflow of this interpreter, whether or not its environment is activated (PATH is not consulted)
    argv = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri, "--host", host,
            "--port", str(port), "--workers", "1"]
    os.execve(sys.executable, argv, env)


def _runs_view(uri: str, experiment: str) -> str:
    """The hash route of an experiment's runs table (a bare experiment route opens the GenAI overview)."""
    from zppo_core.tracking.mlflow_tracker import RunStore

    try:
        exp = RunStore(uri).experiment_id(experiment)
    except Exception:  # an unreadable store: the server will say why
        exp = None
    return "" if exp is None else f"#/experiments/{exp}/runs?workflowType=machine_learning"


@app.command("version")
def version() -> None:
    """Print the zppo version."""
    from importlib.metadata import version as v

    console.print(v("zppo"))


def main() -> None:
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
