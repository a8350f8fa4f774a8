"""`zppo reproduce …` (the method table over seeds, aggregated with intervals) and `zppo reproduce show DIR`.

Torch, mlflow and submitit are imported inside the command bodies only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from zppo_cli.options import (ConfigFiles, Executor, Profile, Scale, Set, SlurmSet, console, err_console,
                              user_errors)

app = typer.Typer(
    invoke_without_command=True,
    no_args_is_help=False,
    help="Run the paper's method table (GRPO, ZPPO, its ablations and the baselines) over seeds from one prepared "
    "start, then aggregate: mean ± 95% t interval per method, paired differences vs GRPO, ablation rows, buffer "
    "dynamics figures (e.g. `zppo reproduce --scale tiny --seeds 4`). `zppo reproduce show DIR` prints a study.",
)


@app.callback()
def reproduce(
    ctx: typer.Context,
    scale: Optional[str] = Scale,
    config: Optional[list[Path]] = ConfigFiles,
    seeds: Optional[int] = typer.Option(None, "--seeds", "-n", help="Seeds per method (0..N-1); required unless "
                                        "--resume."),
    methods: Optional[str] = typer.Option(None, "--methods", "-m", help="Comma-separated methods (default: the whole "
                                          "table, see `zppo ls methods`)."),
    set_: Optional[list[str]] = typer.Option(None, "--set", help=Set.help + " Applied to every run (over the "
                                             "method)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Study directory (default runs/reproduce/<scale>)."),
    parallel: Optional[int] = typer.Option(None, "--parallel", "-j", help="Runs at a time (local: default the "
                                           "number of cores, one thread each)."),
    executor: str = Executor,
    profile: Optional[str] = Profile,
    slurm: Optional[list[str]] = SlurmSet,
    resume: bool = typer.Option(False, "--resume", help="Complete a partly finished study: finished runs are kept, "
                                "interrupted ones resume from their checkpoints."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the plan (runs, settings, prepared start, what is "
                                 "finished) and exit; nothing is run or created."),
) -> None:
    if ctx.invoked_subcommand is not None:
        return
    with user_errors():
        from zppo_cli.orchestration.reproduce import plan_reproduce
        from zppo_cli.orchestration.reproduce_run import Reproduce

        plan = plan_reproduce(scale, seeds, methods, list(set_ or []), out, executor=executor, parallel=parallel,
                              resume=resume, profile=profile, slurm=list(slurm or []), files=list(config or []))
        if dry_run:
            _print_plan(plan)
            return
        code = Reproduce(plan, console, err_console).run()
    if code:
        raise typer.Exit(code)


def _print_plan(plan) -> None:
    from zppo_cli.orchestration.config_layers import shown_files
    from zppo_cli.orchestration.reproduce import is_finished

    cfg = plan.base_cfg
    console.print(f"# {plan.command()}" + (" --resume" if plan.resume else ""), style="dim", highlight=False)
    console.print(f"study dir:  {plan.out}\nruns:       {len(plan.methods)} methods × {len(plan.seeds)} seeds = "
                  f"{len(plan.runs)} (seed-major), {plan.executor}, {plan.parallel} at a time"
                  + (f", run.threads={plan.threads} each" if plan.threads else "") +
                  f"\nmethods:    {', '.join(plan.methods)}\nseeds:      {plan.seeds}\n"
                  f"each run:   {cfg.run.steps} steps × {cfg.algo.n_new} new questions, G_S={cfg.rollout.group_size}; "
                  f"eval {', '.join(cfg.eval.suites)} every {cfg.eval.every} steps and at the end "
                  f"({cfg.eval.per_level} questions per family and level × {cfg.eval.samples} samples)",
                  highlight=False, markup=False)
    if cfg.model.student == "tiny":
        from zppo_core.train.prepare import cache_dir, is_prepared

        console.print(f"prepared:   {cache_dir(cfg)} ({'ready' if is_prepared(cfg) else 'prepared once, first'})",
                      highlight=False, markup=False)
    files = shown_files(plan.files)
    if files:
        console.print("config:     " + " < ".join(files) + (" (as read when the study started)" if plan.resume else
                                                            " (read now; every run gets these values)"),
                      highlight=False, markup=False, soft_wrap=True)
    if plan.sets:
        console.print("every run:  --set " + " --set ".join(plan.sets), highlight=False, markup=False, soft_wrap=True)
    done = sum(is_finished(r, cfg.run.steps) for r in plan.runs)
    if done:
        console.print(f"finished:   {done} of {len(plan.runs)} runs (kept)", highlight=False)
    if plan.executor == "slurm":
        from zppo_cli.orchestration.cli import print_dry_run
        from zppo_cli.orchestration.submit import slurm_params

        params = slurm_params(plan.profile, plan.scale, plan.slurm, f"zppo-reproduce-{plan.out.name}")
        print_dry_run(params, (plan.out / "jobs" / "submitit").absolute(), console, array_size=len(plan.runs) - done)
    console.print("# nothing run, nothing created", style="dim")


@app.command("show")
def show(study: Path = typer.Argument(..., help="A study directory written by `zppo reproduce`.")) -> None:
    """Print a study's table from its runs as they are now (nothing is written)."""
    with user_errors():
        import json

        from rich.markdown import Markdown

        from zppo_core.config import ConfigError
        from zppo_cli.orchestration.reproduce import PLAN_FILE, aggregate
        from zppo_core.tracking.comparison import markdown

        if not (study / PLAN_FILE).is_file():
            raise ConfigError(f"{study} is not a study directory ({PLAN_FILE} missing); pass the --out of a "
                              "`zppo reproduce` run (default runs/reproduce/<scale>)")
        meta = json.loads((study / PLAN_FILE).read_text())
        results, _, _ = aggregate(study, meta)
        console.print(Markdown(markdown(results, title=f"zppo reproduce · scale {meta['scale']} · "
                                        f"{len(meta['seeds'])} seeds", command=meta.get("command"))))
        status, minutes = meta.get("status", "RUNNING").lower(), meta.get("seconds", 0) / 60
        # `seconds` counts the invocations that have ended: a study still running shows when it was planned
        when = f"{minutes:.1f} min in all" if status != "running" else f"planned {meta.get('created', '?')}" + (
            f", {minutes:.1f} min in earlier invocations" if minutes else "")
        console.print(f"{study}: {status}, {when}"
                      + (f" · MLflow parent run {meta['parent_run_id']}" if meta.get("parent_run_id") else ""),
                      highlight=False)
