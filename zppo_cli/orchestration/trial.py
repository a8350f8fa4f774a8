"""One sweep trial: an ordinary zppo training run that reports its objective to the Optuna study.

    python -m zppo_cli.orchestration.trial TRIAL_DIR/trial.json [LAUNCH_ID]   (local sweeps: a process per trial)
    zppo_cli.orchestration.trial:run_trial(spec=..., launch=...)              (Slurm sweeps: the submitit job target)

`trial.json` (written by the sweep) names the storage, study, trial number, objective metric, pruner and the trial's
resolved config and run dir (TRIAL_DIR/<study>-t<nnn>). The sweep asked for the trial and tells Optuna the outcome;
this worker only reports intermediate values (every step that carries the objective metric, i.e. every periodic
eval) and stops the run early when the pruner says so (`on_step` returns True: the run checkpoints and finishes
its MLflow run). The outcome goes to TRIAL_DIR/result.json, which the sweep reads.

A requeued (preempted) or relaunched trial resumes its run from the latest checkpoint, like `zppo train --resume`.
While it trains, the worker records a heartbeat in the trial (user attr `heartbeat`, see sweep/liveness.py), so a
sweep process that did not launch it can tell whether it still runs. Ctrl-C (SIGINT) writes result.json with state
`interrupted`: the sweep relaunches such a trial instead of counting it as failed.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
import traceback
from pathlib import Path
from typing import Any

RESULT_FILE = "result.json"
SPEC_FILE = "trial.json"


def open_storage(spec: str):
    """An Optuna storage from the sweep's storage string: an RDB URL (sqlite:///…, postgresql://…) or the path of
    a journal file (multi-process safe, the default)."""
    import optuna

    if "://" in spec:
        return optuna.storages.RDBStorage(spec)
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(str(Path(spec).expanduser())))


def trial_id_of(storage, study_name: str, number: int) -> int:
    """The storage's id of trial `number` of a study (Optuna's public storage API; trial numbers are per study)."""
    return storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(study_name), number)


def build_pruner(p: dict[str, Any]):
    import optuna

    name = p.get("name", "none")
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=int(p.get("n_startup_trials", 2)),
                                           n_warmup_steps=int(p.get("n_warmup_steps", 0)),
                                           interval_steps=int(p.get("interval_steps", 1)))
    if name == "threshold":
        return optuna.pruners.ThresholdPruner(lower=p.get("lower"), upper=p.get("upper"),
                                              n_warmup_steps=int(p.get("n_warmup_steps", 0)))
    return optuna.pruners.NopPruner()


def objective_of(history: list[dict[str, float]], metric: str) -> tuple[float | None, int | None]:
    """The last finite value of `metric` in a run's per-step history, and its step."""
    for i in range(len(history) - 1, -1, -1):
        v = history[i].get(metric)
        if v is not None and math.isfinite(float(v)):
            return float(v), int(history[i].get("step", i + 1))
    return None, None


def _write(path: Path, data: dict[str, Any]) -> None:
    from zppo_core.run_dir import write_atomic

    write_atomic(path, json.dumps(data, indent=2))


def run_trial(spec: str, launch: str | None = None) -> dict[str, Any]:
    """Run (or resume) the trial described by `spec` (its trial.json). Returns and writes the result.

    `launch` is the id the sweep gave this launch of the trial (trial user attr `launch`): a launch that was
    superseded (the sweep relaunched the trial, e.g. a Slurm job that stayed pending after its sweep process died)
    and a trial already finished in the study exit at once, without touching the run or result.json."""
    import optuna

    from zppo_core.config import config_from_file
    from zppo_core.run_dir import RunDir
    from zppo_core.train.run import train

    from zppo_cli.orchestration.sweep.liveness import Heartbeat, heartbeat_interval, sweep_lock

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec_path = Path(spec)
    s = json.loads(spec_path.read_text())
    tdir = spec_path.parent
    rd = Path(s["run_dir"])
    metric = s["metric"]
    t0 = time.time()

    def log(msg: str) -> None:
        print(f"zppo trial {s['number']}: {msg}", flush=True)

    try:
        storage = open_storage(s["storage"])
        trial_id = trial_id_of(storage, s["study"], s["number"])

        def beat(t: float) -> None:
            storage.set_trial_user_attr(trial_id, "heartbeat", t)

        # under the sweep lock, so a sweep process deciding whether this trial's worker lives sees this first beat
        with sweep_lock(Path(s["sweep_dir"])) if s.get("sweep_dir") else contextlib.nullcontext():
            stale = _not_to_run(storage.get_trial(trial_id), launch)
            if not stale:
                beat(time.time())
        if stale:
            log(f"{stale}; nothing to do")
            return {"state": "skipped", "error": stale}
        study = optuna.load_study(study_name=s["study"], storage=storage, pruner=build_pruner(s.get("pruner") or {}),
                                  sampler=optuna.samplers.RandomSampler())
        trial = optuna.trial.Trial(study, trial_id)
        cfg = config_from_file(s["config"])
        pruned_at: list[int] = []

        def on_step(step: int, m: dict[str, float]) -> bool:
            v = m.get(metric)
            line = f"step {step}/{cfg.run.steps} accuracy {m.get('train/accuracy', float('nan')):.1f}%"
            if v is not None and math.isfinite(float(v)):
                trial.report(float(v), step)
                line += f" {metric} {float(v):.2f}"
                if trial.should_prune():
                    pruned_at.append(step)
                    log(line + " -> pruned")
                    return True
            log(line)
            return False

        with Heartbeat(beat, float(s.get("heartbeat_s") or heartbeat_interval()), log):
            run = RunDir(rd)
            if run.resume_or_start(log):
                ckpt = run.latest_checkpoint()
                log(f"resuming {rd} from {ckpt.name}")
                # steps an earlier attempt logged and checkpointed but was killed before reporting
                done = [row for row in run.metrics() if int(row.get("step", 0)) <= RunDir.step_of(ckpt)]
                _report_missing(trial, storage.get_trial(trial_id).intermediate_values, done, metric)
                res = train(None, run_dir=rd, resume=True, on_step=on_step, log=log)
            else:
                log(f"starting {rd} ({', '.join(f'{k}={v}' for k, v in s['params'].items())})")
                res = train(cfg, run_dir=rd, resume=False, on_step=on_step, log=log)
        value, at = objective_of(res.history, metric)
        if res.stopped_early:
            state, error = "pruned", None
        elif value is None:
            state, error = "fail", f"the run never reported {metric} (is eval.every > 0 with that suite?)"
        else:
            state, error = "complete", None
        if res.mlflow_run_id:
            trial.set_user_attr("mlflow_run_id", res.mlflow_run_id)
            _annotate_child(cfg, res.mlflow_run_id, s, state, value, at)
        result = {"state": state, "value": value, "step": at, "error": error, "run_dir": str(rd),
                  "mlflow_run_id": res.mlflow_run_id, "steps_done": len(res.history), "seconds": time.time() - t0}
    except KeyboardInterrupt:
        # not a failure: the sweep (or its --resume, or another sweep process) relaunches it from its checkpoint
        _write(tdir / RESULT_FILE, {"state": "interrupted", "value": None, "error": None, "run_dir": str(rd),
                                    "seconds": time.time() - t0})
        log("interrupted; the sweep's --resume continues this trial from its checkpoint")
        raise
    except BaseException as err:  # the trial failed: say why in result.json (the sweep marks it FAIL)
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        result = {"state": "fail", "value": None, "error": f"{type(err).__name__}: {first}"[:500],
                  "traceback": traceback.format_exc()[-4000:], "run_dir": str(rd), "seconds": time.time() - t0}
        _write(tdir / RESULT_FILE, result)
        raise
    _write(tdir / RESULT_FILE, result)
    log(f"{state}: {metric} = {value}" + (f" (pruned at step {pruned_at[0]})" if pruned_at else ""))
    return result


def _report_missing(trial, reported: dict[int, float], history: list[dict[str, Any]], metric: str) -> None:
    """Report the objective values of steps the study does not have (the loop writes a step's metrics line and
    checkpoint before `on_step` reports it: an attempt killed in between left them unreported)."""
    for row in history:
        v, step = row.get(metric), int(row.get("step", 0))
        if step not in reported and v is not None and math.isfinite(float(v)):
            trial.report(float(v), step)


def _not_to_run(ft, launch: str | None) -> str | None:
    """Why this worker must not run its trial (it is finished, or this launch was superseded), or None."""
    if ft.state.is_finished():
        return f"trial {ft.number} is already {ft.state.name} in the study"
    current = ft.user_attrs.get("launch")
    if launch and current and current != launch:
        return f"this launch ({launch}) of trial {ft.number} was superseded by launch {current}"
    return None


def _annotate_child(cfg, run_id: str, s: dict[str, Any], state: str, value: float | None, at: int | None) -> None:
    """The trial's own MLflow run gets its sampled params (trial.*), the objective and the Optuna state."""
    try:
        from zppo_core.tracking.mlflow_tracker import MlflowTracker

        tr = MlflowTracker(cfg.tracking.experiment, uri=cfg.tracking.uri, run_id=run_id)
        tr.log_params({f"trial.{k}": f"{v:.4g}" if isinstance(v, float) else str(v) for k, v in s["params"].items()})
        tr.set_tags({"optuna.state": state.upper(), "optuna.trial_number": str(s["number"])})
        if value is not None:
            tr.log_metrics({"sweep/objective": value}, step=at or 0)
        tr.finish("FINISHED")
    except Exception as err:  # tracking trouble must not fail a finished trial
        print(f"zppo trial {s['number']}: could not annotate MLflow run {run_id} ({err})", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (1, 2):
        print("usage: python -m zppo_cli.orchestration.trial TRIAL_DIR/trial.json [LAUNCH_ID]", file=sys.stderr)
        return 2
    try:
        run_trial(*args)
    except KeyboardInterrupt:
        return 130
    except BaseException:
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
