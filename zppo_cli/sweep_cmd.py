"""`zppo sweep NAME …` (Optuna sweeps over a definition in sweeps/) and `zppo sweep show NAME [--json]`.

`zppo sweep buffer --trials 6` is short for `zppo sweep run buffer --trials 6`. The sweep itself
(`zppo_cli.orchestration.sweep`) returns data and reports events; this module draws them: the live trials table,
the events, the best configuration. Optuna, torch and mlflow are imported inside the command bodies only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from typer.core import TyperGroup

from zppo_cli.options import (ConfigFiles, DryRun, Executor, Profile, Scale, Set, SlurmSet, console, err_console,
                              user_errors)


class _SweepGroup(TyperGroup):
    """Unknown first words are sweep names: `zppo sweep buffer …` runs `zppo sweep run buffer …`."""

    def resolve_command(self, ctx, args):
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["run", *args]
        return super().resolve_command(ctx, args)


app = typer.Typer(
    cls=_SweepGroup,
    no_args_is_help=True,
    help="Optuna sweeps over a definition in sweeps/ (e.g. `zppo sweep buffer --trials 6 --parallel 2`); "
    "`zppo sweep show NAME` prints the trials and the best config. `zppo ls sweeps` lists the definitions.",
)

SweepName = typer.Argument(..., help="A sweep in sweeps/ (see `zppo ls sweeps`), e.g. buffer, or a sweep YAML file.")
Study = typer.Option(None, "--study", help="Optuna study name (default NAME-SCALE); its files go to runs/sweeps/<study>/.")


@app.command("run")
def run(
    name: str = SweepName,
    trials: Optional[int] = typer.Option(None, "--trials", "-n", help="Trial budget (default: the sweep file's)."),
    parallel: Optional[int] = typer.Option(None, "--parallel", "-j",
                                           help="Trials at a time (local processes or Slurm jobs)."),
    scale: Optional[str] = Scale,
    config: Optional[list[Path]] = ConfigFiles,
    set_: Optional[list[str]] = typer.Option(None, "--set", help=Set.help + " Applied to every trial."),
    executor: str = Executor,
    profile: Optional[str] = Profile,
    slurm: Optional[list[str]] = SlurmSet,
    storage: Optional[str] = typer.Option(
        None, "--storage",
        help="Optuna storage: an RDB URL (sqlite:///sweep.db, postgresql://user@host/db) or a journal file path "
        "(default: runs/sweeps/<study>/optuna.journal, safe with several processes).",
    ),
    study: Optional[str] = Study,
    resume: bool = typer.Option(False, "--resume", help="Continue the study: finished trials are kept, interrupted "
                                "ones resume from their checkpoints."),
    dry_run: bool = DryRun,
) -> None:
    """Run an Optuna sweep: every trial is a zppo training run, nested under one MLflow parent run."""
    with user_errors():
        from zppo_cli.orchestration.sweep import Sweep, plan_sweep

        plan = plan_sweep(name, scale, trials=trials, parallel=parallel, sets=list(set_ or []), executor=executor,
                          storage=storage, study=study, resume=resume, profile=profile, slurm=list(slurm or []),
                          runtime_checks=not dry_run, files=list(config or []))
        if dry_run:
            _print_plan(plan)
            return
        with _LiveView() as view:
            outcome = Sweep(plan, view).run()
        _print_outcome(outcome)
    if outcome.exit_code:
        raise typer.Exit(outcome.exit_code)


def _print_plan(plan) -> None:
    from zppo_cli.orchestration.sweep import shown_storage

    s = plan.spec
    console.print(f"# sweep {s.name} ({s.path}) · scale {s.scale} · method {plan.base_cfg.method}", style="dim")
    console.print(f"study:      {plan.study}\nsweep dir:  {plan.sweep_dir}\nstorage:    {shown_storage(plan.storage)}\n"
                  f"trials:     {plan.trials}, {plan.parallel} at a time ({plan.executor})"
                  + (f", run.threads={plan.threads} each" if plan.threads else "") +
                  f"\nobjective:  {s.direction} {s.metric}\nsampler:    {s.sampler}\npruner:     {s.pruner}",
                  highlight=False, markup=False)
    console.print("space:", highlight=False)
    for p in s.params:
        console.print(f"  {p.describe()}" + (f"   # {p.help}" if p.help else ""), highlight=False, markup=False,
                      soft_wrap=True)
    if s.sampler["name"] == "grid":
        console.print(f"grid ({s.grid_size()} points): {s.grid}", highlight=False, markup=False)
    files = [f["label"] if f.get("kind") == "preset" else f["path"] for f in plan.user_files]
    if files:
        console.print("config:     " + " < ".join(map(str, files)) + " (read now; every trial gets these values)",
                      highlight=False, markup=False, soft_wrap=True)
    sets = s.set + plan.user_sets
    console.print("every trial: --set " + " --set ".join(sets) if sets else "every trial: (preset as is)",
                  highlight=False, markup=False, soft_wrap=True)
    if plan.executor == "slurm":
        from zppo_cli.orchestration.cli import print_dry_run
        from zppo_cli.orchestration.submit import slurm_params

        params = slurm_params(plan.profile, s.scale, plan.slurm, f"zppo-sweep-{plan.study}")
        print_dry_run(params, (plan.sweep_dir / "jobs").absolute(), console, array_size=plan.parallel)
    console.print("# nothing run, nothing created", style="dim")


# ------------------------------------------------------------------------------------------------ drawing
_STATE_STYLE = {"COMPLETE": "green", "PRUNED": "yellow", "FAIL": "red", "RUNNING": "cyan", "WAITING": "dim"}
_LEVEL_STYLE = {"error": "red", "warning": "yellow", "detail": "dim"}


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _trials_table(space: list[dict], rows: list[dict], title: str, best_trial: Optional[int]):
    """The trials table from `report.trial_rows` rows (running rows may carry step/total_steps)."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column("#", justify="right")
    table.add_column("state")
    for p in space:
        table.add_column(p["name"] + (f" (→{p['field'].split('.')[-1]})" if p["per"] else ""), justify="right")
    table.add_column("step", justify="right")
    table.add_column("last eval", justify="right")
    table.add_column("objective", justify="right")
    table.add_column("note")
    for row in rows:
        state = row["state"]
        cells = [str(row["trial"]), f"[{_STATE_STYLE.get(state, '')}]{state.lower()}[/]"]
        for p in space:
            v = row.get(p["name"])
            cells.append("-" if v is None else (f"{_fmt(v)} ({row.get(p['field'])})" if p["per"] else _fmt(v)))
        if "step" in row:
            cells.append(f"{row['step']}/{row['total_steps']}" if row.get("total_steps") else str(row["step"]))
        else:
            cells.append("-" if row["last_step"] is None else str(row["last_step"]))
        cells.append("-" if row["last_eval"] is None else f"{row['last_eval']:.2f}")
        cells.append("-" if row["value"] is None else f"{row['value']:.2f}" +
                     (" ★" if row["trial"] == best_trial else ""))
        note = row.get("error") or ""
        if row.get("retry_of") is not None:
            note = f"retry of {row['retry_of']}" + (f"; {note}" if note else "")
        cells.append(note[:60])
        table.add_row(*cells)
    return table


def _print_best(space: list[dict], best: Optional[dict], metric: str, direction: str) -> None:
    if best is None:
        console.print("no trial has completed yet: no best configuration")
        return
    console.print(f"[bold]best trial {best['trial']}[/]: {metric} = {best['value']:.2f} ({direction})",
                  highlight=False)
    for p in space:
        v = best["params"].get(p["name"])
        extra = f"   ({p['name']} = {_fmt(v)} × {p['per']})" if p["per"] else ""
        console.print(f"  {p['field']} = {best['config'].get(p['field'])}{extra}", highlight=False)
    console.print("train it:", highlight=False)
    console.print(f"  {best['train_command']}", highlight=False, markup=False, soft_wrap=True)


class _LiveView:
    """The sweep's observer: events as lines on stderr above a live trials table (rich Live, transient)."""

    def __enter__(self):
        from rich.live import Live

        self.live = Live(console=err_console, refresh_per_second=2, transient=True)
        self.live.__enter__()
        return self

    def __exit__(self, *exc):
        return self.live.__exit__(*exc)

    def event(self, ev) -> None:
        style = _LEVEL_STYLE.get(ev.level)
        err_console.print(ev.text if style is None else f"[{style}]{escape(ev.text)}[/]", highlight=False,
                          soft_wrap=True, markup=style is not None)

    def progress(self, snap: dict) -> None:
        self.live.update(_trials_table(snap["space"], snap["trials"], snap["title"], snap["best_trial"]))


def _print_outcome(out) -> None:
    snap = out.snapshot
    if out.status == "KILLED":
        err_console.print(f"continue with: {out.resume_command} (finished trials are kept; interrupted ones resume "
                          "from their checkpoints)", highlight=False, soft_wrap=True)
        return
    if out.status != "FINISHED":
        return
    console.print(_trials_table(snap["space"], snap["trials"], snap["title"], snap["best_trial"]))
    _print_best(snap["space"], out.best, snap["metric"], snap["direction"])
    for name, note in out.plot_notes.items():
        console.print(f"[dim]plot {escape(name)}: {escape(note)}[/]", highlight=False)
    console.print(f"sweep dir: {out.sweep_dir}  ·  {out.seconds:.0f}s  ·  {out.show_command}", highlight=False)


@app.command("show")
def show(
    name: str = typer.Argument(..., help="The sweep (e.g. buffer) or a study name (e.g. buffer-tiny)."),
    scale: Optional[str] = Scale,
    study: Optional[str] = Study,
    as_json: bool = typer.Option(False, "--json", help="Print the sweep as one JSON object (for scripts)."),
) -> None:
    """Print a sweep's trials, its best configuration and the `zppo train` command that trains it."""
    with user_errors():
        from zppo_cli.orchestration.sweep import show_data
        from zppo_cli.orchestration.sweep.plan import root_scale

        data = show_data(name, root_scale(scale), study)
    if as_json:
        import json

        print(json.dumps(data, indent=2))
        return
    console.print(_trials_table(data["space"], data["trials"], f"sweep {data['study']} · {data['direction']} "
                                f"{data['metric']}", data["best"]["trial"] if data["best"] else None))
    console.print(f"{len(data['trials'])} trials (" + ", ".join(f"{v} {k}" for k, v in data["counts"].items()) +
                  f") of a budget of {data['budget']} · storage {data['storage']} · sweep dir {data['sweep_dir']}",
                  highlight=False)
    if data.get("parent_run_id"):
        console.print(f"MLflow parent run {data['parent_run_id']}", highlight=False)
    _print_best(data["space"], data["best"], data["metric"], data["direction"])
