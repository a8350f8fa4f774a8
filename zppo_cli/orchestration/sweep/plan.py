"""A sweep's plan: every check that needs no compute, and where a sweep lives on disk.

    plan = plan_sweep("buffer", scale="tiny", trials=6, parallel=2)   # raises ConfigError (one line); creates nothing

`plan_sweep` resolves a definition (or a resumed sweep's `sweep.json`), the budget, the executor and the storage,
and checks them all before anything is written: the CLI turns a ConfigError into exit code 2 with nothing created.
`SweepPlan.trial_config` is the resolved config of one trial (preset + method + the definition's `set` + `--set`
+ the searched values, all as `key=value` overrides).

Sweep directory (default `runs/sweeps/<study>/`):
    sweep.json        the plan: definition, scale, overrides, storage, budget, MLflow parent run id
    definition.yaml   the sweep file as it was when the sweep started; base_config.yaml: the trials' common config
    optuna.journal    the default storage (Optuna JournalStorage on a file; safe with several processes)
    trials/0003/      trial.json, config.yaml, worker.log, launch.json, result.json and the run dir <study>-t003/
    plots/, best.json written at the end (also logged to the MLflow parent run)
    sweep.lock, drivers/   the sweep lock and one lock per running sweep process (liveness.py)

`build_sampler` makes the plan's Optuna sampler.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zppo_core.config import ConfigError
from zppo_cli.orchestration.config_layers import config_base, root_scale  # noqa: F401 (re-exported)
from zppo_cli.orchestration.sweep_spec import SweepSpec, check_against_config, load_sweep

SWEEP_FILE = "sweep.json"
LOCK_FILE = "sweep.lock"
JOURNAL_FILE = "optuna.journal"
SWEEPS_ROOT = Path("runs") / "sweeps"


def sweep_dir_for(study: str) -> Path:
    return SWEEPS_ROOT / study


def trial_dir(sweep_dir: Path, number: int) -> Path:
    return sweep_dir / "trials" / f"{number:04d}"


def shown_storage(storage: str) -> str:
    """The storage string with any password hidden (it goes to MLflow and the terminal)."""
    if "://" not in storage:
        return storage
    try:
        from sqlalchemy.engine import make_url

        return make_url(storage).render_as_string(hide_password=True)
    except Exception:
        return storage.split("://", 1)[0] + "://…"


def check_storage(storage: str) -> None:
    """Open an RDB storage URL now, so an unreachable database is one line before anything is created."""
    from zppo_cli.orchestration.trial import open_storage

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            open_storage(storage)
        except Exception as err:
            first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
            raise ConfigError(f"--storage {shown_storage(storage)}: cannot open it ({type(err).__name__}: {first}); "
                              "check the URL, the driver and that the database is reachable, or drop --storage "
                              "for a journal file in the sweep directory") from None


def _command() -> str:
    from zppo_core.train.record import command_line

    return command_line()


def _short(v: Any) -> str:
    """A searched value as people write it (sampled floats carry 15 digits)."""
    return f"{v:.4g}" if isinstance(v, float) else str(v)


@dataclass
class SweepPlan:
    spec: SweepSpec
    study: str
    sweep_dir: Path
    storage: str
    trials: int
    parallel: int
    executor: str
    user_sets: list[str]
    base_cfg: Any
    resume: bool = False
    profile: str | None = None
    slurm: list[str] = field(default_factory=list)
    threads: int | None = None
    retries: int = 1
    notes: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)     # sweep.json of a resumed sweep
    command: str = field(default_factory=lambda: _command())  # the `zppo sweep …` line (trials' MLflow description)
    user_files: list[dict[str, Any]] = field(default_factory=list)  # --config files / user presets, as read (JSON)

    def trial_config(self, params: dict[str, Any], run_dir: Path, parent_run_id: str | None, number: int):
        """The resolved config of one trial: the base (preset + method + sweep set + --set) plus the params."""
        from zppo_core.config import load_config

        searched = [f"{field}={json.dumps(value)}" for field, value in self.config_values(params).items()]
        run: dict[str, Any] = {"run_dir": str(run_dir)}
        if self.threads:
            run["threads"] = self.threads
        tags = dict(self.base_cfg.tracking.tags)
        tags.update({"zppo.sweep": self.spec.name, "optuna.study": self.study, "optuna.trial_number": str(number)})
        values = "-".join(f"{name}={_short(v)}" for name, v in params.items())
        cfg = self.base_cfg
        tracking = {"parent_run_id": parent_run_id, "tags": tags,
                    # the MLflow run name says which trial and what it tried
                    "run_name": f"{cfg.method}-{cfg.scale}-s{cfg.run.seed}-t{number:03d}-{values}",
                    "description": f"{self.command} · trial {number}: "
                                   + ", ".join(f"{k}={_short(v)}" for k, v in params.items())}
        return load_config(self.spec.scale, method=self.spec.method,
                           overrides=self.spec.set + self.user_sets + searched,
                           extra={"run": run, "tracking": tracking}, files=self.user_files)

    def config_values(self, params: dict[str, Any]) -> dict[str, Any]:
        base = self.base_cfg.model_dump()
        return {p.field: p.config_value(params[p.name], base) for p in self.spec.params if p.name in params}

    @property
    def show_command(self) -> str:
        default = f"{self.spec.name}-{self.spec.scale}"
        return (f"zppo sweep show {self.spec.name} --scale {self.spec.scale}"
                + (f" --study {self.study}" if self.study != default else ""))

    @property
    def resume_command(self) -> str:
        return f"zppo sweep {self.spec.name} --scale {self.spec.scale} --study {self.study} --resume"


def plan_sweep(name: str, scale: str | None, trials: int | None = None, parallel: int | None = None,
               sets: list[str] | None = None, executor: str = "local", storage: str | None = None,
               study: str | None = None, resume: bool = False, profile: str | None = None,
               slurm: list[str] | None = None, runtime_checks: bool = True,
               files: list[Any] | None = None) -> SweepPlan:
    """Every check that needs no compute; raises ConfigError (one line). Creates nothing. `runtime_checks=False`
    (dry runs) skips what only matters when trials run here: CUDA, model and data paths."""
    from zppo_core.config import load_config

    from zppo_cli.orchestration.submit import EXECUTORS

    sets = list(sets or [])
    files = list(files or [])
    if executor not in EXECUTORS:
        raise ConfigError(f"--executor {executor}: unknown executor; valid: {', '.join(EXECUTORS)}")
    if executor != "slurm" and (profile or slurm):
        raise ConfigError("--profile/--slurm only apply to --executor slurm; add --executor slurm or drop them")
    for v, opt in ((trials, "--trials"), (parallel, "--parallel")):
        if v is not None and v < 1:
            raise ConfigError(f"{opt} must be at least 1 (got {v})")
    meta: dict[str, Any] = {}
    if resume:
        spec_name = Path(name).stem if name.endswith((".yaml", ".yml")) else name
        study = study or f"{spec_name}-{root_scale(scale)}"
        sdir = sweep_dir_for(study)
        if not (sdir / SWEEP_FILE).is_file():
            raise ConfigError(f"--resume: no sweep '{study}' in {SWEEPS_ROOT}/ (no {sdir / SWEEP_FILE}); start it "
                              f"without --resume, or pass --study NAME ({known_studies()})")
        meta = json.loads((sdir / SWEEP_FILE).read_text())
        if sets or files:
            raise ConfigError("--resume continues a sweep exactly as configured; drop --set/--config")
        if storage is not None and storage != meta["storage"]:
            raise ConfigError(f"--resume: this sweep's storage is {shown_storage(meta['storage'])}; drop --storage")
        spec = SweepSpec.from_dict(meta["spec"])
        sets = list(meta.get("user_sets", []))
        files = list(meta.get("user_files", []))
        storage = meta["storage"]
        trials = trials or int(meta["trials"])
        parallel = parallel or min(int(meta["parallel"]), trials)
        if executor == "local" and meta.get("executor", "local") != "local":
            executor = meta["executor"]
            profile = profile or meta.get("profile")
            slurm = slurm or meta.get("slurm")
    else:
        scale, files = config_base(scale, files)
        spec = load_sweep(name, scale)
        study = study or f"{spec.name}-{scale}"
        sdir = sweep_dir_for(study)
        if sdir.exists() and any(sdir.iterdir()):
            raise ConfigError(f"sweep directory {sdir} already exists; continue it with --resume, or pass --study "
                              "NEW_NAME for a new study")
        given_trials = trials
        trials = trials or spec.trials
        if parallel is not None and parallel > trials:
            raise ConfigError(f"--parallel {parallel} is larger than the trial budget ({trials}); use --parallel "
                              f"{trials} or more --trials")
        parallel = parallel or min(spec.parallel, trials)
        if spec.sampler["name"] == "grid" and trials > spec.grid_size():
            if given_trials is not None:
                raise ConfigError(f"--trials {trials} is larger than the grid ({spec.grid_size()} points); use "
                                  f"--trials {spec.grid_size()} or fewer")
            trials = spec.grid_size()
            parallel = min(parallel, trials)
    if parallel > trials:
        raise ConfigError(f"--parallel {parallel} is larger than the trial budget ({trials}); use --parallel "
                          f"{trials} or more --trials")
    if not study or "/" in study or study.startswith("."):
        raise ConfigError(f"--study '{study}': a study name is a plain name (it names runs/sweeps/<study>/)")
    base = load_config(spec.scale, method=spec.method, overrides=spec.set + sets, files=files)
    check_against_config(spec, base, sets, files)
    threads = None
    if executor != "slurm" and base.run.threads is None:
        threads = max(1, (os.cpu_count() or 1) // parallel)  # M trials share this machine's cores
    if executor != "slurm" and runtime_checks:  # CUDA, models, data: what a trial here would check first (GPU nodes check their own)
        from zppo_core.train.run import preflight

        preflight(base, sdir / "trials" / ".preflight", resume=False)  # a path no trial uses
    if executor == "slurm" and runtime_checks:
        from zppo_cli.orchestration.cli import require_single_process
        from zppo_cli.orchestration.submit import slurm_params

        require_single_process(slurm_params(profile, spec.scale, list(slurm or []), "zppo-sweep"), "sweep trials")
    storage = storage or str((sdir / JOURNAL_FILE).absolute())
    if "://" in storage:
        check_storage(storage)
        if not resume:
            _check_new_study(storage, study)
    elif not resume and Path(storage).exists():
        raise ConfigError(f"--storage {storage} already exists; --resume continues it, or choose another file")
    return SweepPlan(spec=spec, study=study, sweep_dir=sdir, storage=storage, trials=trials, parallel=parallel,
                     executor=executor, user_sets=sets, user_files=files, base_cfg=base, resume=resume, profile=profile,
                     slurm=list(slurm or []), threads=threads, meta=meta)


def _check_new_study(storage: str, study: str) -> None:
    import optuna

    from zppo_cli.orchestration.trial import open_storage

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        names = [s.study_name for s in optuna.get_all_study_summaries(open_storage(storage), include_best_trial=False)]
    if study in names:
        raise ConfigError(f"study '{study}' already exists in {shown_storage(storage)}; continue it with --resume "
                          "or pass --study NEW_NAME")


def known_studies() -> str:
    names = sorted(p.name for p in SWEEPS_ROOT.glob("*") if (p / SWEEP_FILE).is_file()) if SWEEPS_ROOT.is_dir() else []
    return "known: " + ", ".join(names) if names else "none yet"


def load_sweep_state(name: str, scale: str, study: str | None = None) -> tuple[Path, dict[str, Any]]:
    """The sweep directory and `sweep.json` of a sweep named by its definition (NAME-SCALE) or its study."""
    cands = [study] if study else [name, f"{Path(name).stem}-{scale}"]
    for c in cands:
        d = sweep_dir_for(c)
        if (d / SWEEP_FILE).is_file():
            return d, json.loads((d / SWEEP_FILE).read_text())
    raise ConfigError(f"no sweep '{cands[-1]}' in {SWEEPS_ROOT}/; run `zppo sweep {Path(name).stem} --scale {scale}` "
                      f"first, or pass --study NAME ({known_studies()})")


def build_sampler(spec: SweepSpec, parallel: int, seed_offset: int = 0):
    import optuna

    s = spec.sampler
    seed = s.get("seed")
    seed = None if seed is None else int(seed) + seed_offset
    if s["name"] == "grid":
        class AskTellGridSampler(optuna.samplers.GridSampler):
            # GridSampler stops an optimize() loop when the grid is done; with ask/tell the budget does that
            def after_trial(self, study, trial, state, values):  # noqa: D401
                return None

        return AskTellGridSampler(spec.grid, seed=seed)
    if s["name"] == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=int(s.get("n_startup_trials", 4)),
                                      multivariate=bool(s.get("multivariate", True)), constant_liar=parallel > 1)
