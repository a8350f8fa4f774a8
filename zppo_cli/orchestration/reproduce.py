"""`zppo reproduce`: the paper's method table from one prepared start, S seeds per method, aggregated with intervals.

    plan = plan_reproduce("tiny", seeds=4, methods=None, sets=[], out=None, executor="local")  # checks; creates nothing
    code = Reproduce(plan, console, err_console).run()     # reproduce_run.py: runs (or completes) it, writes the table

Every (method, seed) is an ordinary `zppo train` run (`jobs.train_run`: starts, or resumes from its latest
checkpoint) of the same preset, `--config` files and `--set` overrides (layers: preset < files < the method <
--set), with `run.seed = seed`; the tiny student and teacher are
prepared once, before any run starts, so every run starts from the same prepared models. Runs go through the
existing executors (`orchestration.submit`): `local` = one submitit process per run, `--parallel` at a time (each
with `run.threads = cores // parallel`), seed-major order (seed 0 of every method first, so a stopped study has
whole seeds); `slurm` = one job array of every pending run; `debug` = in this process, one after another.

Resume: a run whose latest checkpoint is its last step is finished and never run again; a run still running
(its process or Slurm job alive, e.g. after this process was killed) is followed, not relaunched; any other run
is launched again and resumes from its latest checkpoint (or restarts if it had none). The config files and user
presets are read once, when the study is planned, and kept in reproduce.json: every run, a requeued Slurm job and
`--resume` use the values of the start, even if a file changes or is deleted. Then the table is built from
the finished runs (`zppo_core.tracking.comparison`).

Study directory (default runs/reproduce/<scale>):
    reproduce.json              the plan: scale, methods, seeds, config file layers (as read), --set overrides,
                                executor, MLflow parent run id
    runs/<method>-s<seed>/      the training runs (config.yaml, metrics.jsonl, checkpoints/, reports/)
    jobs/<method>-s<seed>/      config.yaml the run started from, launch.json (executor, job id, seconds), logs
    results.json, results.md, figures/*.png      written at the end (also logged to the MLflow parent run)
"""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zppo_core.config import ConfigError
from zppo_core.config.methods import SPECS, TABLE

PLAN_FILE = "reproduce.json"
LOCK_FILE = "reproduce.lock"
ROOT = Path("runs") / "reproduce"


@dataclass
class RunSpec:
    method: str
    seed: int
    run_dir: Path
    job_dir: Path

    @property
    def name(self) -> str:
        return f"{self.method}-s{self.seed}"


@dataclass
class ReproducePlan:
    scale: str
    methods: list[str]
    seeds: list[int]
    sets: list[str]
    out: Path
    executor: str = "local"
    parallel: int = 1
    threads: int | None = None
    profile: str | None = None
    slurm: list[str] = field(default_factory=list)
    resume: bool = False
    base_cfg: Any = None
    meta: dict[str, Any] = field(default_factory=dict)
    files: list[dict[str, Any]] = field(default_factory=list)  # --config files / user presets, as read (JSON)

    @property
    def runs(self) -> list[RunSpec]:
        """Seed-major: seed 0 of every method, then seed 1, ..."""
        return [RunSpec(m, s, self.out / "runs" / f"{m}-s{s}", self.out / "jobs" / f"{m}-s{s}")
                for s in self.seeds for m in self.methods]

    def run_config(self, run: RunSpec, parent_run_id: str | None):
        from zppo_core.config import load_config

        extra: dict[str, Any] = {"run": {"seed": run.seed, "run_dir": str(run.run_dir.absolute())},
                                 "tracking": {"parent_run_id": parent_run_id,
                                              "tags": {**self.base_cfg.tracking.tags, "zppo.reproduce": str(
                                                  self.out.absolute())}}}
        if self.threads:
            extra["run"]["threads"] = self.threads
        return load_config(self.scale, method=run.method, overrides=self.sets, extra=extra, files=self.files)

    def command(self) -> str:
        parts = ["zppo reproduce", f"--scale {self.scale}"]
        parts += [f"--config {shlex.quote(str(f['path']))}" for f in self.files if f.get("kind") != "preset"]
        parts.append(f"--seeds {len(self.seeds)}")
        if list(self.methods) != list(TABLE):
            parts.append(f"--methods {','.join(self.methods)}")
        parts += [f"--set {shlex.quote(s)}" for s in self.sets]
        return " ".join(parts)


def parse_methods(spec: str | None) -> list[str]:
    if spec is None or spec.strip() in ("", "all"):
        return list(TABLE)
    names = [m.strip() for m in spec.split(",") if m.strip()]
    bad = [m for m in names if m not in SPECS]
    if bad or not names:
        raise ConfigError(f"--methods: unknown method(s) {', '.join(bad) or '(none given)'}; valid: {', '.join(TABLE)}")
    return list(dict.fromkeys(names))


def plan_reproduce(scale: str, seeds: int | None, methods: str | None, sets: list[str] | None, out: Path | None,
                   executor: str = "local", parallel: int | None = None, resume: bool = False,
                   profile: str | None = None, slurm: list[str] | None = None,
                   files: list[Any] | None = None) -> ReproducePlan:
    """Every check that needs no compute (one-line ConfigError); creates nothing. `files` (--config paths) are read
    here, once: the plan keeps their values."""
    from zppo_core.config import load_config

    from zppo_cli.orchestration.config_layers import config_base, root_scale

    from zppo_cli.orchestration.submit import EXECUTORS

    if executor not in EXECUTORS:
        raise ConfigError(f"--executor {executor}: unknown executor; valid: {', '.join(EXECUTORS)}")
    if executor != "slurm" and (profile or slurm):
        raise ConfigError("--profile/--slurm only apply to --executor slurm; add --executor slurm or drop them")
    if parallel is not None and parallel < 1:
        raise ConfigError(f"--parallel must be at least 1 (got {parallel})")
    files = list(files or [])
    meta: dict[str, Any] = {}
    if resume:
        out = Path(out) if out is not None else ROOT / root_scale(scale)
        if not (out / PLAN_FILE).is_file():
            raise ConfigError(f"--resume: {out} holds no study ({PLAN_FILE} missing); start it without --resume "
                              "(or pass --out DIR of an existing study)")
        if sets or files or methods is not None or seeds is not None:
            raise ConfigError("--resume completes the study exactly as planned; drop --seeds/--methods/--set/--config")
        meta = json.loads((out / PLAN_FILE).read_text())
        scale, method_list, seed_list, sets = meta["scale"], meta["methods"], meta["seeds"], meta["sets"]
        files = list(meta.get("files", []))
        executor = meta.get("executor", executor) if executor == "local" else executor
        profile, slurm = profile or meta.get("profile"), slurm or meta.get("slurm")
        parallel = parallel or meta.get("parallel")
    else:
        scale, files = config_base(scale, files)  # a bad file: one line with file:line, before anything exists
        out = Path(out) if out is not None else ROOT / scale
        if out.exists() and any(out.iterdir()):
            raise ConfigError(f"study directory {out} already exists; complete it with --resume, or pass --out NEW_DIR")
        if seeds is None or seeds < 1:
            raise ConfigError(f"--seeds must be at least 1 (got {seeds})")
        method_list, seed_list, sets = parse_methods(methods), list(range(seeds)), list(sets or [])
    base = load_config(scale, method=method_list[0], overrides=sets, files=files)
    if not (base.eval.every and base.eval.suites):
        raise ConfigError("zppo reproduce compares eval curves: set eval.every > 0 and eval.suites (e.g. --set "
                          "eval.every=20 --set 'eval.suites=[tiny, tiny-ood]')")
    cfgs = {m: load_config(scale, method=m, overrides=sets, files=files) for m in method_list}  # all valid
    if base.model.student == "tiny":
        from zppo_core.train.prepare import cache_key

        keys = {cache_key(c) for c in cfgs.values()}
        if len(keys) != 1:  # pragma: no cover - the method is not part of the recipe
            raise ConfigError("the methods would start from different prepared models; drop method-specific --set")
    cores = os.cpu_count() or 1
    if parallel is None:
        parallel = cores if executor == "local" else len(method_list) * len(seed_list)
    threads = None
    if executor != "slurm" and base.run.threads is None:
        threads = max(1, cores // min(parallel, len(method_list) * len(seed_list)))
    if executor == "slurm":
        from zppo_cli.orchestration.cli import require_single_process
        from zppo_cli.orchestration.submit import slurm_params

        require_single_process(slurm_params(profile, scale, list(slurm or []), "zppo-reproduce"), "training")
    return ReproducePlan(scale=scale, methods=method_list, seeds=seed_list, sets=sets, out=out, executor=executor,
                         parallel=parallel, threads=threads, profile=profile, slurm=list(slurm or []), resume=resume,
                         base_cfg=base, meta=meta, files=files)


# ------------------------------------------------------------------------------------------------ run states
def checkpoint_step(run: RunSpec) -> int:
    from zppo_core.run_dir import RunDir

    rd = RunDir(run.run_dir)
    ck = rd.latest_checkpoint()
    return rd.step_of(ck) if ck is not None else 0


def is_finished(run: RunSpec, total_steps: int) -> bool:
    return checkpoint_step(run) >= total_steps


def launch_info(run: RunSpec) -> dict[str, Any]:
    try:
        return json.loads((run.job_dir / "launch.json").read_text())
    except (OSError, ValueError):
        return {}


def write_launch(run: RunSpec, info: dict[str, Any]) -> None:
    from zppo_core.run_dir import write_atomic

    run.job_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(run.job_dir / "launch.json", json.dumps(info, indent=2))


def alive(run: RunSpec) -> bool:
    """The run's last launched process or Slurm job is still running (a killed `reproduce` left it behind)."""
    from zppo_cli.orchestration import registry

    info = launch_info(run)
    rec = registry.find(str(info.get("job_id"))) if info.get("job_id") else None
    if rec is None or info.get("ended"):
        return False
    state = registry.main_state(registry.states([rec])[rec.job_id]["state"])
    if rec.executor == "local":
        return state == "RUNNING"
    return state not in registry.TERMINAL and state != "UNKNOWN"


# ------------------------------------------------------------------------------------------------ aggregation
def aggregate(out: Path, meta: dict[str, Any]):
    """(results dict, run records) of a study directory from its runs' directories."""
    from zppo_core.config import load_config
    from zppo_core.tracking.comparison import RunRecord, build

    total = load_config(meta["scale"], method=meta["methods"][0], overrides=meta["sets"],
                        files=meta.get("files", [])).run.steps
    records = []
    for s in meta["seeds"]:
        for m in meta["methods"]:
            run = RunSpec(m, s, out / "runs" / f"{m}-s{s}", out / "jobs" / f"{m}-s{s}")
            records.append(RunRecord.read(m, s, run.run_dir, total, launch_info(run).get("seconds")))
    labels = {m: SPECS[m].label or m for m in meta["methods"]}
    return build(records, meta["methods"], meta["seeds"], labels), records, labels


def write_outputs(out: Path, meta: dict[str, Any]) -> tuple[dict[str, Any], str, list[Path]]:
    """results.json, results.md and figures/ of the study; returns (results, markdown, figure paths)."""
    from zppo_core.run_dir import write_atomic
    from zppo_core.tracking.comparison import markdown
    from zppo_core.tracking.comparison_plots import write_figures

    results, records, labels = aggregate(out, meta)
    results["command"] = meta.get("command")
    results["wall_seconds"] = meta.get("seconds")
    md = markdown(results, title=f"zppo reproduce · scale {meta['scale']} · {len(meta['seeds'])} seeds",
                  command=meta.get("command"))
    write_atomic(out / "results.json", json.dumps(results, indent=2))
    write_atomic(out / "results.md", md)
    figures = write_figures(records, results, labels, out / "figures")
    return results, md, figures
