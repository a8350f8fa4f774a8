"""What a sweep has found, as data: trial rows, the best trial, the `zppo train` command that trains it, the plots.

    show_data("buffer", "tiny")       # -> {"study", "space", "trials": [rows], "counts", "best", ...} (JSON-able)
    trial_rows(spec, study, base_cfg) # one dict per trial (also the MLflow parent run's sweep/trials.json)
    best_info(spec, study, ...)       # best.json: trial, value, params, config values, run dir, train command
    save_plots(study, spec, out_dir)  # Optuna's matplotlib plots as PNGs

Nothing here prints: `zppo sweep show` renders these (a table, or `--json`), the sweep driver logs them to MLflow.
"""

from __future__ import annotations

import shlex
import warnings
from pathlib import Path
from typing import Any

from zppo_core.config import ConfigError
from zppo_cli.orchestration.sweep.plan import load_sweep_state, shown_storage
from zppo_cli.orchestration.sweep_spec import SweepSpec


def fmt_value(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def fmt_params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={fmt_value(v)}" for k, v in params.items())


def space(spec: SweepSpec) -> list[dict[str, Any]]:
    """The searched parameters: name, the config field it sets and the field it is a multiple of (or None)."""
    return [{"name": p.name, "field": p.field, "per": p.per} for p in spec.params]


def trial_rows(spec: SweepSpec, study, base_cfg, trials=None) -> list[dict[str, Any]]:
    """One dict per trial: number, state, params (and the config value of a `per` param), last reported step and
    value, objective, seconds, MLflow run id, error, retry_of."""
    base = base_cfg.model_dump()
    rows = []
    for t in study.get_trials(deepcopy=False) if trials is None else trials:
        row: dict[str, Any] = {"trial": t.number, "state": t.state.name}
        for p in spec.params:
            if p.name in t.params:
                row[p.name] = t.params[p.name]
                if p.per:
                    row[p.field] = p.config_value(t.params[p.name], base)
        iv = t.intermediate_values
        row["last_step"] = max(iv) if iv else None
        row["last_eval"] = iv[max(iv)] if iv else None
        row["value"] = t.value
        row["seconds"] = round(t.duration.total_seconds(), 1) if t.duration else None
        row["mlflow_run_id"] = t.user_attrs.get("mlflow_run_id")
        row["error"] = t.user_attrs.get("error")
        row["retry_of"] = t.user_attrs.get("retry_of")
        rows.append(row)
    return rows


def best_trial(study):
    try:
        return study.best_trial
    except ValueError:  # no completed trial yet
        return None


def train_command(spec: SweepSpec, user_sets: list[str], params: dict[str, Any], base_cfg,
                  files: list[dict[str, Any]] = ()) -> str:
    base = base_cfg.model_dump()
    sets = list(spec.set) + list(user_sets)
    sets += [f"{p.field}={p.config_value(params[p.name], base)}" for p in spec.params if p.name in params]
    last = {s.partition("=")[0].strip(): s for s in sets}  # a later --set of the same key wins: show it once
    sets = list(last.values())
    method = f" --method {spec.method}" if spec.method else ""
    presets = [f["label"].removeprefix("preset ") for f in files if f.get("kind") == "preset"]
    configs = "".join(f" -c {shlex.quote(str(f['path']))}" for f in files if f.get("kind") == "file")
    return (f"zppo train --scale {presets[-1] if presets else spec.scale}{configs}{method} "
            + " ".join(f"--set {shlex.quote(s)}" for s in sets))


def best_info(spec: SweepSpec, study, user_sets: list[str], base_cfg, files: list[dict[str, Any]] = ()
              ) -> dict[str, Any] | None:
    """best.json: the best trial's number, value, params, config values, run dir and `zppo train` command."""
    best = best_trial(study)
    if best is None:
        return None
    base = base_cfg.model_dump()
    config = {p.field: p.config_value(best.params[p.name], base) for p in spec.params if p.name in best.params}
    return {"trial": best.number, "value": best.value, "params": best.params, "config": config,
            "run_dir": best.user_attrs.get("run_dir"),
            "train_command": train_command(spec, user_sets, best.params, base_cfg, files)}


def save_plots(study, spec: SweepSpec, out_dir: Path) -> dict[str, str]:
    """Optuna's matplotlib plots as PNGs; returns {plot: why it was skipped} for the ones that could not be drawn."""
    import optuna

    complete = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    skipped: dict[str, str] = {}
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from optuna.visualization import matplotlib as ovm
    except Exception as err:  # pragma: no cover
        return {"all": f"matplotlib unavailable ({err})"}
    names = [p.name for p in spec.params]
    pair = names[:2]
    plots: list[tuple[str, Any, int]] = [
        ("optimization_history", lambda: ovm.plot_optimization_history(study), 1),
        ("intermediate_values", lambda: ovm.plot_intermediate_values(study), 1),
        ("param_importances", lambda: ovm.plot_param_importances(study), 2),
    ]
    if len(pair) == 2:
        plots.append((f"contour_{pair[0]}_{pair[1]}", lambda: ovm.plot_contour(study, params=pair), 2))
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, draw, need in plots:
        if len(complete) < need:
            skipped[name] = f"needs at least {need} completed trials ({len(complete)} so far)"
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ax = draw()
            fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
            fig.set_size_inches(8, 6)
            fig.tight_layout()
            fig.savefig(out_dir / f"{name}.png", dpi=100)
            plt.close(fig)
        except Exception as err:
            skipped[name] = f"skipped ({type(err).__name__}: {str(err).splitlines()[0][:120] if str(err) else ''})"
            plt.close("all")
    if skipped:
        (out_dir / "skipped.txt").write_text("".join(f"{k}: {v}\n" for k, v in skipped.items()))
    return skipped


def show_data(name: str, scale: str, study: str | None = None) -> dict[str, Any]:
    """Everything `zppo sweep show` prints, as JSON-able data (ConfigError if there is no such sweep)."""
    import optuna

    from zppo_core.config import load_config

    from zppo_cli.orchestration.trial import open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sdir, meta = load_sweep_state(name, scale, study)
    spec = SweepSpec.from_dict(meta["spec"])
    try:
        st = optuna.load_study(study_name=meta["study"], storage=open_storage(meta["storage"]))
    except Exception as err:
        raise ConfigError(f"cannot open study {meta['study']} in {shown_storage(meta['storage'])} ({err})") from None
    user_sets, files = meta.get("user_sets", []), meta.get("user_files", [])
    base = load_config(spec.scale, method=spec.method, overrides=spec.set + user_sets, files=files)
    rows = trial_rows(spec, st, base)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["state"].lower()] = counts.get(r["state"].lower(), 0) + 1
    return {"study": meta["study"], "sweep": spec.name, "scale": spec.scale, "sweep_dir": str(sdir),
            "storage": shown_storage(meta["storage"]), "budget": meta["trials"], "metric": spec.metric,
            "direction": spec.direction, "space": space(spec), "counts": counts, "trials": rows,
            "best": best_info(spec, st, user_sets, base, files), "parent_run_id": meta.get("parent_run_id")}
