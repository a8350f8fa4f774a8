"""Option aliases shared by every command (defined once), and the error -> one line + exit code rule.

Exit codes (documented in the README):
  0  success
  1  the run itself failed (an exception during training; traceback shown); a served teacher that stops
     answering mid-run: one line, the last checkpoint intact, `zppo train --resume RUN_DIR` continues
  2  bad input: config, preset, method, paths, resume dir, data, Slurm profile/key, Slurm not installed,
     sbatch refused the job, unknown job id, a served teacher/judge endpoint unreachable or not serving the
     named model at start (one line naming the field/file/endpoint and the fix)
  3  a Slurm job followed with --wait (or `zppo jobs wait`) was cancelled; the message names the resume command
  130 interrupted (Ctrl-C); the last checkpoint is intact, `zppo train --resume RUN_DIR` continues
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True)

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_CANCELLED = 3

Scale = typer.Option(
    None, "--scale", "-s",
    help="Preset: tiny (CPU, minutes; the default), tiny-hard (CPU, the method comparison), tiny-vl (CPU, images), "
    "0.8b, 2b, 4b, 9b (paper, GPUs), or a user/cluster preset (`zppo ls presets`). Default: the config file's "
    "`scale:`, else tiny.",
)
ConfigFiles = typer.Option(
    None, "--config", "-c",
    help="Experiment config YAML with the presets' sections (repeatable; later files win); it may name its preset "
    "(scale: 2b). Layers: preset < config files < --set. `zppo config show` prints the result.",
)
Method = typer.Option(None, "--method", "-m", help="Training method (default: the preset's, grpo). See `zppo ls`.")
Steps = typer.Option(None, "--steps", help="Rollout steps (overrides run.steps).")
Seed = typer.Option(None, "--seed", help="Run seed (overrides run.seed).")
Set = typer.Option(
    None, "--set", help="Config override key=value (repeatable), e.g. --set optim.lr=1e-5 --set algo.n_new=8."
)
RunDir = typer.Option(None, "--run-dir", help="Run directory (default: runs/<method>-<scale>-s<seed>-<timestamp>, "
                      "which is also the MLflow run name).")
DryRun = typer.Option(False, "--dry-run", help="Print the resolved config and exit without running anything.")
Executor = typer.Option(
    "local", "--executor", "-x",
    help="Where to run: local (here, in the foreground), slurm (submit through submitit; returns at once), "
    "debug (the Slurm job's callable, run in this process).",
)
Profile = typer.Option(
    None, "--profile",
    help="Slurm cluster profile: a name from slurm/*.yaml (default $ZPPO_SLURM_PROFILE or 'local') or a YAML file.",
)
SlurmSet = typer.Option(
    None, "--slurm", help="Slurm parameter override key=value (repeatable), e.g. --slurm time_min=60 --slurm qos=high."
)
Wait = typer.Option(False, "--wait", help="With --executor slurm: follow the job with a progress display and exit "
                    "with its status (0 done, 1 failed, 3 cancelled).")


def bad_input(message: str) -> "typer.Exit":
    from rich.markup import escape

    # escaped: messages quote things like 'zppo[vllm]' that rich would read as markup and drop
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(EXIT_BAD_INPUT)


@contextmanager
def user_errors() -> Iterator[None]:
    """Known user errors become one line on stderr and exit code 2."""
    from zppo_core.config import ConfigError

    known: tuple[type[BaseException], ...] = (ConfigError,)
    try:
        from zppo_core.tasks.jsonl_data import DataError

        known = known + (DataError,)
    except Exception:  # pragma: no cover
        pass
    from zppo_core.rollout.openai_engine import EndpointError, ServedModelFailed

    known = known + (EndpointError,)  # a served teacher/judge unreachable or misnamed at start
    try:
        yield
    except ServedModelFailed as err:  # mid-run: one line, the last checkpoint intact, resumable
        from rich.markup import escape

        err_console.print(f"[bold red]error:[/] {escape(str(err))}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_FAILED) from None
    except known as err:
        raise bad_input(str(err)) from None
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]; the last checkpoint is intact (zppo train --resume RUN_DIR)")
        raise typer.Exit(EXIT_INTERRUPTED) from None


def overrides(items: Optional[list[str]]) -> list[str]:
    return list(items or [])


def heavy_imported() -> bool:
    """True when torch has been imported (the CLI's help path must not)."""
    return "torch" in sys.modules


def rel(p: Path) -> str:
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)
