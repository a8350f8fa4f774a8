"""`zppo train` and `zppo prepare`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from zppo_cli.options import (
    DryRun,
    Method,
    RunDir,
    Scale,
    Seed,
    Set,
    Steps,
    console,
    err_console,
    overrides,
    rel,
    user_errors,
)


def _resolve(scale: str, method: Optional[str], steps: Optional[int], seed: Optional[int], sets, run_dir):
    from zppo_core.config import load_config

    extra: dict = {"run": {}}
    if steps is not None:
        extra["run"]["steps"] = steps
    if seed is not None:
        extra["run"]["seed"] = seed
    if run_dir is not None:
        extra["run"]["run_dir"] = str(run_dir)
    return load_config(scale, method=method, overrides=overrides(sets), extra=extra)


def train(
    scale: str = Scale,
    method: Optional[str] = Method,
    steps: Optional[int] = Steps,
    seed: Optional[int] = Seed,
    set_: Optional[list[str]] = typer.Option(None, "--set", help=Set.help),
    run_dir: Optional[Path] = RunDir,
    resume: Optional[Path] = typer.Option(
        None, "--resume", help="Continue the run in this directory from its latest checkpoint."
    ),
    dry_run: bool = DryRun,
) -> None:
    """Train a student with GRPO, ZPPO or a baseline (tiny scale runs on a CPU in minutes)."""
    with user_errors():
        from zppo_core.config import config_from_file, dump_config

        if resume is not None:
            cfg = config_from_file(resume / "config.yaml") if (resume / "config.yaml").is_file() else None
            if cfg is None:
                from zppo_core.config import ConfigError

                raise ConfigError(
                    f"resume dir {resume} has no config.yaml (not a zppo run directory); pass a directory "
                    "created by `zppo train`"
                )
            if set_ or steps is not None or seed is not None:
                from zppo_core.config import ConfigError

                raise ConfigError("--resume continues a run exactly as configured; drop --set/--steps/--seed")
        else:
            cfg = _resolve(scale, method, steps, seed, set_, run_dir)
        if dry_run:
            console.print(f"# resolved config (scale={cfg.scale}, method={cfg.method})", style="dim")
            console.print(dump_config(cfg), highlight=False, markup=False)
            return
        _run(cfg, run_dir=resume if resume is not None else run_dir, resume=resume is not None)


def _run(cfg, run_dir: Optional[Path], resume: bool) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from zppo_core.train.run import train as run_train

    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("acc {task.fields[acc]:.2f}  reward {task.fields[reward]:.2f}  {task.fields[sps]:.2f}s/step"),
        TimeElapsedColumn(),
        console=err_console,
        transient=False,
    )
    task_id = None

    def on_step(step: int, m: dict[str, float]) -> None:
        nonlocal task_id
        if task_id is None:
            task_id = progress.add_task(f"{cfg.method}@{cfg.scale}", total=cfg.run.steps, completed=step - 1,
                                        acc=0.0, reward=0.0, sps=0.0)
        progress.update(task_id, completed=step, acc=m["train/accuracy"], reward=m["train/reward_mean"],
                        sps=m["perf/step_time_s"])

    def log(msg: str) -> None:
        progress.console.print(f"[dim]{msg}[/]", highlight=False)

    with progress:
        result = run_train(cfg, run_dir=run_dir, resume=resume, on_step=on_step, log=log)
    _summary(cfg, result)


def _summary(cfg, result) -> None:
    from rich.table import Table

    h = result.history
    table = Table(title=f"zppo train · {cfg.method} · scale {cfg.scale} · seed {cfg.run.seed}", show_header=True)
    table.add_column("metric")
    table.add_column("first 10 steps", justify="right")
    table.add_column("last 10 steps", justify="right")

    def avg(rows, key):
        vals = [r[key] for r in rows if key in r]
        return f"{sum(vals) / len(vals):.3f}" if vals else "-"

    for key, label in [("train/accuracy", "plain accuracy"), ("train/reward_mean", "reward (all groups)"),
                       ("train/hard_frac", "hard questions"), ("train/trivial_group_frac", "trivial groups"),
                       ("train/entropy", "entropy"), ("perf/step_time_s", "seconds / step")]:
        table.add_row(label, avg(h[:10], key), avg(h[-10:], key))
    console.print(table)
    if h and "eval/heldout/accuracy" in h[-1]:
        levels = {k.rsplit("_", 1)[1]: v for k, v in h[-1].items() if k.startswith("eval/heldout/level_")}
        console.print(f"held-out accuracy (mean@4, T=0.6): {h[-1]['eval/heldout/accuracy']:.3f}  by level: "
                      + ", ".join(f"L{k} {v:.2f}" for k, v in levels.items()))
    fates = result.method_summary.get("fates_by_entry_bin") if result.method_summary else None
    if fates:
        ft = Table(title=f"replay buffer · {result.method_summary.get('buffer_size', 0)} questions still buffered")
        ft.add_column("entry bin")
        for col in ("graduated", "evicted", "buffered", "graduated / left"):
            ft.add_column(col, justify="right")
        for b, c in sorted(fates.items()):
            left = c.get("graduated", 0) + c.get("evicted", 0)
            share = f"{c.get('graduated', 0) / left:.1%}" if left else "-"
            ft.add_row(f"{b:g}%", str(c.get("graduated", 0)), str(c.get("evicted", 0)), str(c.get("buffered", 0)), share)
        console.print(ft)
    if result.prepare_report:
        s, t = result.prepare_report["student"], result.prepare_report["teacher"]
        console.print(f"prepared student: accuracy {s['accuracy']:.2f}, hard share {s['hard_share']:.2f} · "
                      f"teacher accuracy {t['accuracy']:.2f}")
    console.print(f"run dir: {rel(result.run_dir)}  ·  MLflow run: {result.mlflow_run_id}  ·  "
                  f"{result.seconds:.0f}s")
    if result.mlflow_run_id:
        console.print("open the UI: [bold]zppo ui[/] (or mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db)")


def prepare(
    scale: str = Scale,
    set_: Optional[list[str]] = typer.Option(None, "--set", help=Set.help),
) -> None:
    """Prepare (SFT) the tiny student and teacher now; cached, so `train` then starts at once."""
    with user_errors():
        cfg = _resolve(scale, None, None, None, set_, None)
        if cfg.model.student != "tiny":
            from zppo_core.config import ConfigError

            raise ConfigError(f"prepare is for --scale tiny; preset '{scale}' uses real pretrained models")
        from zppo_core.train.prepare import ensure_prepared

        t0 = time.perf_counter()
        path = ensure_prepared(cfg, lambda s: err_console.print(f"[dim]{s}[/]"))
        import json

        rep = json.loads((path / "report.json").read_text())
        console.print(f"prepared in {path} ({time.perf_counter() - t0:.0f}s)")
        for who in ("student", "teacher"):
            r = rep[who]
            console.print(f"  {who}: {r['params'] / 1e6:.2f}M params, {r['steps']} SFT steps, accuracy "
                          f"{r['accuracy']:.2f}, hard share {r['hard_share']:.2f}, by level {r['accuracy_by_level']}")
