"""`zppo jobs`: the jobs submitted from here (registry in $ZPPO_STATE_DIR/jobs.jsonl), with live Slurm states."""

from __future__ import annotations

from typing import Optional

import typer

from zppo_cli.options import EXIT_INTERRUPTED, bad_input, console, err_console, user_errors

app = typer.Typer(help="Jobs submitted from here: list (states from sacct), logs, wait, cancel; Slurm profiles.",
                  no_args_is_help=False, invoke_without_command=True)

JobId = typer.Argument(..., help="Job id as `zppo jobs` lists it (an array's base id means all its tasks).")


def _records(job_id: str):
    from zppo_cli.orchestration import registry

    recs = registry.find_all(job_id)
    if not recs:
        raise bad_input(f"unknown job id '{job_id}' (not in {registry.registry_path()}); `zppo jobs` lists the "
                        "jobs submitted from here")
    return recs


@app.callback()
def jobs(
    ctx: typer.Context,
    limit: int = typer.Option(20, "--limit", "-n", help="Show the N most recent jobs."),
    all_: bool = typer.Option(False, "--all", "-a", help="Show every recorded job."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per job (for scripts)."),
) -> None:
    """List jobs submitted from here: id, name, state (from Slurm accounting), run dir, MLflow run."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.table import Table

    from zppo_cli.orchestration import registry

    recs = registry.load()
    if not all_:
        recs = recs[-limit:]
    if not recs:
        if not as_json:
            console.print(f"no jobs submitted from here yet (registry {registry.registry_path()})")
        return
    info = registry.states(recs)
    if as_json:
        import json

        for r in recs:
            st = info[r.job_id]
            print(json.dumps({"id": r.job_id, "name": r.name, "kind": r.kind, "executor": r.executor,
                              "state": st["state"], "elapsed": st["elapsed"], "exit_code": st["exit_code"],
                              "result": registry.result_outcome(r),
                              "step": r.last_step(), "steps": r.total_steps, "run_dir": r.run_dir,
                              "mlflow_run_id": r.mlflow_run_id(), "logs": str(r.paths().stdout),
                              "submitted": r.submitted}))
        return
    t = Table(title=f"zppo jobs ({registry.registry_path()})")
    for col in ("id", "name", "state", "result", "elapsed", "step", "run dir", "MLflow run"):
        t.add_column(col, overflow="fold")
    for r in recs:
        st = info[r.job_id]
        step = f"{r.last_step()}/{r.total_steps}" if r.total_steps else "-"
        t.add_row(r.job_id, r.name, st["state"], registry.result_outcome(r) or "-", st["elapsed"] or "-", step,
                  r.run_dir or "-",
                  r.mlflow_run_id() or "-")
    console.print(t)


@app.command("logs")
def logs(
    job_id: str = JobId,
    stream: str = typer.Option("both", "--stream", help="out | err | both"),
    tail: Optional[int] = typer.Option(None, "--tail", help="Only the last N lines of each stream."),
) -> None:
    """Print a job's stdout and stderr (submitit's log files)."""
    if stream not in ("out", "err", "both"):
        raise bad_input(f"--stream {stream}: valid values are out, err, both")
    for r in _records(job_id):
        paths = r.paths()
        for which, path in (("out", paths.stdout), ("err", paths.stderr)):
            if stream not in (which, "both"):
                continue
            console.print(f"==> {path} <==", style="dim", highlight=False)
            if not path.is_file():
                console.print("(not written yet: the job has not started)", style="dim")
                continue
            lines = path.read_text(errors="replace").splitlines()
            if tail is not None:
                lines = lines[-tail:]
            console.print("\n".join(lines), highlight=False, markup=False)


@app.command("cancel")
def cancel(job_id: str = JobId) -> None:
    """Cancel a job (scancel); its run dir and last checkpoint stay, and the message says how to resume."""
    import subprocess

    recs = _records(job_id)
    for r in recs:
        if r.executor != "slurm":
            raise bad_input(f"job {r.job_id} ran with --executor {r.executor}; only Slurm jobs can be cancelled here")
    ids = sorted({r.job_id if len(recs) == 1 else r.base_id for r in recs})
    out = subprocess.run(["scancel", *ids], capture_output=True, text=True)
    if out.returncode != 0:
        raise bad_input(f"scancel {' '.join(ids)} failed: {(out.stderr or out.stdout).strip()}; is the cluster up? (sinfo)")
    r = recs[0]
    nxt = f"; continue with: {r.resume_hint}" if r.resume_hint else ""
    console.print(f"cancelled job {' '.join(ids)} ({r.name}){nxt}", highlight=False, soft_wrap=True)


@app.command("wait")
def wait(job_id: str = JobId) -> None:
    """Follow a job (or a whole array) until it ends; exit 0 done, 1 failed, 3 cancelled."""
    from zppo_cli.orchestration.follow import follow

    recs = _records(job_id)
    try:
        code = follow(recs, console, err_console)
    except KeyboardInterrupt:
        err_console.print(f"stopped following; job {job_id} keeps running (zppo jobs cancel {job_id} stops it)")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    if code:
        raise typer.Exit(code)


@app.command("profiles")
def profiles() -> None:
    """List the Slurm cluster profiles (--profile NAME) and the keys a profile or --slurm may set."""
    from rich.table import Table

    with user_errors():
        from zppo_cli.orchestration.profiles import FRIENDLY, list_profiles, load_profile, valid_keys

        t = Table(title="Slurm profiles (--profile)")
        t.add_column("profile")
        t.add_column("file")
        t.add_column("description")
        for name, path in list_profiles().items():
            data, _ = load_profile(name)
            t.add_row(name, str(path), str(data.get("description", "")))
        console.print(t)
        console.print("keys (profile or --slurm key=value): " + ", ".join(valid_keys()), highlight=False)
        for k, (_, help_) in FRIENDLY.items():
            console.print(f"  {k}: {help_}", highlight=False)
