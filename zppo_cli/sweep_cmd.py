"""`zppo sweep NAME …` (Optuna sweeps over a definition in sweeps/) and `zppo sweep show NAME`.

`zppo sweep buffer --trials 6` is short for `zppo sweep run buffer --trials 6`. Optuna, torch and mlflow are
imported inside the command bodies only.
"""

from __future__ import annotations

from typing import Optional

import typer
from typer.core import TyperGroup

from zppo_cli.options import DryRun, Executor, Profile, Scale, Set, SlurmSet, console, err_console, user_errors


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
    scale: str = Scale,
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
                          runtime_checks=not dry_run)
        if dry_run:
            _print_plan(plan)
            return
        code = Sweep(plan, console, err_console).run()
    if code:
        raise typer.Exit(code)


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
    sets = s.set + plan.user_sets
    console.print("every trial: --set " + " --set ".join(sets) if sets else "every trial: (preset as is)",
                  highlight=False, markup=False, soft_wrap=True)
    if plan.executor == "slurm":
        from zppo_cli.orchestration.cli import print_dry_run
        from zppo_cli.orchestration.submit import slurm_params

        params = slurm_params(plan.profile, s.scale, plan.slurm, f"zppo-sweep-{plan.study}")
        print_dry_run(params, (plan.sweep_dir / "jobs").absolute(), console, array_size=plan.parallel)
    console.print("# nothing run, nothing created", style="dim")


@app.command("show")
def show(
    name: str = typer.Argument(..., help="The sweep (e.g. buffer) or a study name (e.g. buffer-tiny)."),
    scale: str = Scale,
    study: Optional[str] = Study,
) -> None:
    """Print a sweep's trials, its best configuration and the `zppo train` command that trains it."""
    with user_errors():
        from zppo_cli.orchestration.sweep import show as show_sweep

        show_sweep(name, scale, study, console)
