"""Optuna sweeps on real tiny runs, locally (no Slurm needed): parallel trials in the study and as nested MLflow
runs, best params, a raising trial, pruning (threshold in a sweep; median from seeded trials in the worker) and
--resume. Trials are 1-2 steps on the session's prepared test models with a periodic eval every step."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from zppo_cli.app import app

runner = CliRunner()


@pytest.fixture()
def sweep_sets(prepared, test_overrides, tmp_path, monkeypatch):
    """cwd = a fresh dir (runs/sweeps/... goes there); cheap trials: 2 steps, eval every step on 1 item/level."""
    monkeypatch.chdir(tmp_path)
    return list(test_overrides) + ["run.steps=2", "eval.every=1", "eval.per_level=1", "eval.samples=1",
                                   "eval.max_new_tokens=24", "run.threads=1", "run.final_eval_per_level=0"]


def _args(sets):
    out = []
    for s in sets:
        out += ["--set", s]
    return out


def _study(name: str):
    import optuna

    from zppo_cli.orchestration.trial import open_storage

    meta = json.loads((Path("runs/sweeps") / name / "sweep.json").read_text())
    return optuna.load_study(study_name=meta["study"], storage=open_storage(meta["storage"])), meta


def _client():
    from mlflow.tracking import MlflowClient

    return MlflowClient(os.environ["MLFLOW_TRACKING_URI"])


def _children(parent_id: str):
    c = _client()
    exp = c.get_run(parent_id).info.experiment_id
    return c.search_runs([exp], f"tags.`mlflow.parentRunId` = '{parent_id}'")


def test_buffer_sweep_parallel_nested_runs_show_and_resume(sweep_sets):
    r = runner.invoke(app, ["sweep", "buffer", "--trials", "3", "--parallel", "2", *_args(sweep_sets)],
                      terminal_width=200)
    assert r.exit_code == 0, r.output
    study, meta = _study("buffer-tiny")
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3
    assert all(t.intermediate_values and t.value is not None for t in study.trials)
    assert set(study.best_params) == {"capacity", "tau"}
    # trials ran two at a time: the second trial started before the first one finished
    t0, t1 = study.trials[0], study.trials[1]
    assert t1.datetime_start < t0.datetime_complete
    out = " ".join(r.output.split())
    assert f"best trial {study.best_trial.number}" in out and "zppo train --scale tiny --method zppo" in out

    # MLflow: one parent run with the sweep's definition, best params, trials table and plots; 3 nested trials
    c = _client()
    parent = c.get_run(meta["parent_run_id"])
    assert parent.info.status == "FINISHED"
    assert parent.data.params["sweep.study"] == "buffer-tiny"
    assert parent.data.tags["best.tau"] == str(study.best_params["tau"])
    assert "best.zppo.capacity" in parent.data.tags
    arts = {a.path for d in (None, "sweep", "plots") for a in c.list_artifacts(parent.info.run_id, d)}
    assert {"sweep/definition.yaml", "sweep/trials.json", "sweep/best.json", "plots/optimization_history.png",
            "plots/contour_capacity_tau.png", "plots/param_importances.png"} <= arts, arts
    kids = _children(parent.info.run_id)
    assert len(kids) == 3
    by_number = {int(k.data.tags["optuna.trial_number"]): k for k in kids}
    for t in study.trials:
        k = by_number[t.number]
        assert k.info.status == "FINISHED"
        assert float(k.data.params["trial.tau"]) == t.params["tau"]
        assert float(k.data.params["zppo.tau"]) == t.params["tau"]
        assert int(k.data.params["zppo.capacity"]) == max(1, round(t.params["capacity"] * 4))  # algo.n_new=4
        assert k.data.metrics["sweep/objective"] == t.value
        # the run's name says which trial and what it tried; its description, how it was started
        assert k.info.run_name == (f"zppo-tiny-s0-t{t.number:03d}-capacity={t.params['capacity']:.4g}"
                                   f"-tau={t.params['tau']:.4g}")
        assert f"trial {t.number}: capacity=" in k.data.tags["mlflow.note.content"]
        assert not [p for p in k.data.params if p.startswith(("tracking.", "run.run_dir"))]
    # the parent's metrics are named for what they are: each trial's value and the best so far (no duplicates)
    values = {m.step: m.value for m in c.get_metric_history(parent.info.run_id, "sweep/trial_value")}
    assert values == {t.number: t.value for t in study.trials}
    assert parent.data.metrics["sweep/best_value"] == study.best_value
    assert "best_value" not in parent.data.metrics and "sweep/objective" not in parent.data.metrics
    assert parent.data.tags["mlflow.source.name"] == "zppo sweep" and parent.data.tags["mlflow.note.content"]
    table = json.loads(Path(c.download_artifacts(parent.info.run_id, "sweep/trials.json", "dl")).read_text())
    rows = [dict(zip(table["columns"], r)) for r in table["data"]]
    assert "zppo_capacity" in table["columns"] and not [col for col in table["columns"] if "." in col]
    assert all(r["capacity"] == float(f"{r['capacity']:.4g}") for r in rows)  # 4 significant digits

    # show: trials, best capacity and tau, the command that trains it
    s = runner.invoke(app, ["sweep", "show", "buffer"], terminal_width=250)
    assert s.exit_code == 0, s.output
    text = " ".join(s.output.split())
    best = study.best_trial
    assert f"best trial {best.number}" in text
    assert f"zppo.capacity = {max(1, round(best.params['capacity'] * 4))}" in text
    assert f"zppo.tau = {best.params['tau']}" in text
    assert "--set zppo.tau=" in text and "3 trials (3 complete)" in text
    # show --json: the same facts as data
    j = runner.invoke(app, ["sweep", "show", "buffer", "--json"])
    assert j.exit_code == 0, j.output
    data = json.loads(j.stdout)
    assert data["study"] == "buffer-tiny" and data["counts"] == {"complete": 3} and data["budget"] == 3
    assert [row["trial"] for row in data["trials"]] == [t.number for t in study.trials]
    assert [row["value"] for row in data["trials"]] == [t.value for t in study.trials]
    assert data["best"]["trial"] == best.number and data["best"]["params"] == best.params
    assert data["best"]["config"]["zppo.capacity"] == max(1, round(best.params["capacity"] * 4))
    assert data["best"]["train_command"] in text and data["parent_run_id"] == parent.info.run_id

    # a second start of the same sweep is refused; --resume with the same budget runs nothing new
    again = runner.invoke(app, ["sweep", "buffer", "--trials", "3", *_args(sweep_sets)])
    assert again.exit_code == 2 and "--resume" in again.output
    same = runner.invoke(app, ["sweep", "buffer", "--resume"])
    assert same.exit_code == 0, same.output
    assert len(_study("buffer-tiny")[0].trials) == 3

    # a trial left RUNNING by a killed sweep (asked, never finished) is relaunched on --resume, and the budget
    # of 4 is met by it: finished trials are not repeated and no fifth trial is asked
    stale = study.ask(fixed_distributions={k: v for k, v in study.trials[0].distributions.items()})
    res = runner.invoke(app, ["sweep", "buffer", "--resume", "--trials", "4"], terminal_width=200)
    assert res.exit_code == 0, res.output
    study2, _ = _study("buffer-tiny")
    assert [t.state.name for t in study2.trials] == ["COMPLETE"] * 4
    assert [t.datetime_complete for t in study2.trials[:3]] == [t.datetime_complete for t in study.trials[:3]]
    assert study2.trials[3].number == stale.number
    assert len(_children(parent.info.run_id)) == 4


# The second cache_dir cannot be created, so that trial raises at run time (while loading its models); the
# sweep itself prepared the base config's models before launching trials.
FAIL_AND_PRUNE = """
description: "test: one grid point fails at run time, the other is pruned at its first eval"
method: zppo
objective: {metric: eval/tiny-ood/avg, direction: maximize}
sampler: {name: grid}
pruner: {name: threshold, lower: 101}   # eval averages are percentages: every trial is below it
set: ["eval.suites=[tiny-ood]", "prepare.cache_dir=CACHE"]   # the base config: the session's prepared models
space:
  cache: {field: prepare.cache_dir, type: categorical, choices: [CACHE, /proc/zppo-not-writable/prepared]}
  tau: {field: zppo.tau, low: 0.25, high: 0.75, step: 0.125}
grid:
  cache: [CACHE, /proc/zppo-not-writable/prepared]
  tau: [0.5]
"""


def test_failing_trial_is_retried_once_and_the_sweep_continues_and_bad_trials_are_pruned(sweep_sets, tmp_path):
    path = tmp_path / "failprune.yaml"
    path.write_text(FAIL_AND_PRUNE.replace("CACHE", os.environ["ZPPO_TEST_CACHE"]))
    sets = [s for s in sweep_sets if not s.startswith("prepare.cache_dir=")]
    r = runner.invoke(app, ["sweep", str(path), "--parallel", "2", *_args(sets)], terminal_width=200)
    assert r.exit_code == 0, r.output
    study, meta = _study("failprune-tiny")
    states = {t.number: t.state.name for t in study.trials}
    by_cache = {}
    for t in study.trials:
        by_cache.setdefault(t.params["cache"], []).append(t)
    good, bad = by_cache[os.environ["ZPPO_TEST_CACHE"]], by_cache["/proc/zppo-not-writable/prepared"]
    assert [t.state.name for t in good] == ["PRUNED"], states
    assert good[0].intermediate_values and min(good[0].intermediate_values) == 1  # pruned at the first eval
    assert [t.state.name for t in bad] == ["FAIL", "FAIL"], states  # failed, retried once, failed again
    assert bad[1].user_attrs["retry_of"] == bad[0].number and bad[0].user_attrs["retried"]
    assert "zppo-not-writable" in bad[0].user_attrs["error"]
    assert "failed" in r.output and "retrying once" in r.output
    # the pruned trial's run stopped early and finished cleanly, nested under the parent
    kids = _children(meta["parent_run_id"])
    assert len(kids) == 1 and kids[0].data.tags["optuna.state"] == "PRUNED"
    assert kids[0].data.tags["zppo.stopped_early_at"] == "1" and kids[0].info.status == "FINISHED"
    # plots that need completed trials are skipped with a reason, not an error
    assert "needs at least" in (Path("runs/sweeps/failprune-tiny/plots/skipped.txt")).read_text()


def test_worker_prunes_below_the_median_of_earlier_trials(sweep_sets, tmp_path):
    """Median pruner, constructed: two completed trials reported 1000 at every step (eval averages are ≤ 100),
    so the worker's first report is below the median and it stops the run at step 1."""
    import optuna

    from zppo_core.config import dump_config, load_config
    from zppo_cli.orchestration.trial import open_storage, run_trial

    storage = str(tmp_path / "optuna.journal")
    study = optuna.create_study(study_name="median", storage=open_storage(storage), direction="maximize")
    dist = {"tau": optuna.distributions.FloatDistribution(0.25, 0.75)}
    for tau in (0.25, 0.75):
        study.add_trial(optuna.trial.create_trial(params={"tau": tau}, distributions=dist, value=1000.0,
                                                  intermediate_values={1: 1000.0, 2: 1000.0}))
    trial = study.ask(fixed_distributions=dist)
    tdir = tmp_path / "trials" / "0002"
    tdir.mkdir(parents=True)
    cfg = load_config("tiny", method="zppo", overrides=sweep_sets + ["eval.suites=[tiny-ood]",
                                                                    f"zppo.tau={trial.params['tau']}"],
                      extra={"tracking": {"enabled": False}})
    (tdir / "config.yaml").write_text(dump_config(cfg))
    spec = {"study": "median", "storage": storage, "number": trial.number,
            "metric": "eval/tiny-ood/avg", "direction": "maximize", "params": dict(trial.params),
            "pruner": {"name": "median", "n_startup_trials": 2, "n_warmup_steps": 0},
            "config": str(tdir / "config.yaml"), "run_dir": str(tdir / "median-t002")}
    (tdir / "trial.json").write_text(json.dumps(spec))
    res = run_trial(str(tdir / "trial.json"))
    assert res["state"] == "pruned" and res["steps_done"] == 1, res
    assert json.loads((tdir / "result.json").read_text())["state"] == "pruned"
    reported = study.trials[trial.number].intermediate_values
    assert list(reported) == [1] and reported[1] <= 100.0


def test_worker_refuses_a_superseded_launch_and_a_finished_trial(tmp_path):
    """A worker whose launch id is no longer the trial's (the sweep relaunched the trial, e.g. its Slurm job stayed
    queued after its sweep process died), or whose trial is already finished, exits without touching anything."""
    import optuna

    from zppo_cli.orchestration.trial import open_storage, run_trial

    storage = str(tmp_path / "optuna.journal")
    study = optuna.create_study(study_name="s", storage=open_storage(storage), direction="maximize")
    dist = {"tau": optuna.distributions.FloatDistribution(0.25, 0.75)}
    live, done = study.ask(fixed_distributions=dist), study.ask(fixed_distributions=dist)
    live.set_user_attr("launch", "current")
    study.tell(done.number, 1.0)
    for trial, launch, why in ((live, "older", "superseded by launch current"), (done, None, "already COMPLETE")):
        tdir = tmp_path / f"t{trial.number}"
        tdir.mkdir()
        spec = {"study": "s", "storage": storage, "number": trial.number, "sweep_dir": str(tmp_path),
                "metric": "m", "params": {}, "config": str(tdir / "no-config.yaml"), "run_dir": str(tdir / "run")}
        (tdir / "trial.json").write_text(json.dumps(spec))
        res = run_trial(str(tdir / "trial.json"), launch)
        assert res["state"] == "skipped" and why in res["error"], res
        assert sorted(p.name for p in tdir.iterdir()) == ["trial.json"]  # no result.json, no run dir
    assert "heartbeat" not in study.trials[live.number].user_attrs


def test_a_driver_lock_is_held_exactly_while_its_process_lives(tmp_path):
    """Another sweep process learns that a sweep process is gone from its free driver lock (SIGKILL included)."""
    import signal
    import subprocess
    import sys

    from tests.orchestration.conftest import poll
    from zppo_cli.orchestration.sweep.liveness import DriverLock, driver_alive

    code = ("import sys, time\nfrom pathlib import Path\nfrom zppo_cli.orchestration.sweep.liveness import DriverLock\n"
            "d = DriverLock(Path(sys.argv[1])); d.acquire(); print(d.id, flush=True); time.sleep(600)\n")
    child = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        other = child.stdout.readline().strip()
        assert driver_alive(tmp_path, other) and driver_alive(tmp_path, other)  # checking does not take it
        mine = DriverLock(tmp_path)
        mine.acquire()
        assert driver_alive(tmp_path, mine.id) and mine.id != other
        child.send_signal(signal.SIGKILL)
        child.wait(30)
        poll(lambda: not driver_alive(tmp_path, other), 30, "the killed process's lock to be free")
        mine.release()
        assert not driver_alive(tmp_path, mine.id) and not driver_alive(tmp_path, None)
    finally:
        child.kill()


def test_debug_executor_runs_each_trial_in_the_sweep_process(sweep_sets):
    """--executor debug: the trial runs inside the sweep process (no worker process, no launch.json), through the
    same launch, worker start-up check and tell as any other trial."""
    r = runner.invoke(app, ["sweep", "buffer", "--trials", "1", "--executor", "debug", *_args(sweep_sets)],
                      terminal_width=200)
    assert r.exit_code == 0, r.output
    study, _ = _study("buffer-tiny")
    assert [t.state.name for t in study.trials] == ["COMPLETE"]
    tdir = Path("runs/sweeps/buffer-tiny/trials/0000")
    assert json.loads((tdir / "result.json").read_text())["value"] == study.trials[0].value
    assert not (tdir / "launch.json").exists() and not (tdir / "worker.log").exists()


def test_slurm_sweep_runs_trials_as_a_job_array(slurm_cluster, sweep_sets):
    """--executor slurm: trials launched together are one Slurm job array on the local cluster; each task is the
    resumable trial job, reports to the same journal storage and nests its MLflow run under the parent."""
    from zppo_cli.orchestration import registry

    r = runner.invoke(app, ["sweep", "buffer", "--trials", "2", "--parallel", "2", "--executor", "slurm",
                            "--profile", slurm_cluster, "--slurm", "time_min=10", *_args(sweep_sets)],
                      terminal_width=200)
    assert r.exit_code == 0, r.output
    study, meta = _study("buffer-tiny")
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 2
    ids = [json.loads((Path("runs/sweeps/buffer-tiny/trials") / f"{n:04d}" / "launch.json").read_text())["job_id"]
           for n in (0, 1)]
    assert ids[0].split("_")[0] == ids[1].split("_")[0] and {i.split("_")[1] for i in ids} == {"0", "1"}, ids
    assert all(registry.find(i).kind == "trial" for i in ids)
    assert len(_children(meta["parent_run_id"])) == 2
