"""Reading runs back: find them by name, id or run dir, and compare them (what `zppo runs` and `zppo report` use).

    runs = resolve_runs(["zppo-tiny-s0-20261126-120000", "runs/grpo-tiny-s0-…", "3f2a…"])
    diff = config_diff(runs)                       # only the params that differ (absent = does not apply)
    rows = final_table(runs)                       # final scores with n and 95 % intervals, Δ vs the first run
    plot_curves(runs, ["eval/tiny-ood/avg", "train/accuracy"], Path("cmp.png"))

Everything goes through `mlflow_tracker.RunStore` (the only module that imports mlflow). A run dir leads to its
run through its `run.json` (MLflow run id and store); names are MLflow run names (`<method>-<scale>-s<seed>-<time>`,
unique prefixes accepted). "Final" means: an eval score at the last step it was evaluated (with the n and standard
error logged beside it); a training metric as the mean of its last `TRAIN_WINDOW` steps ± the se over those steps.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zppo_core.config import ConfigError
from zppo_core.run_dir import RunDir
from zppo_core.tracking.stats import (N_PREFIX, SE_PREFIX, Estimate, difference, estimate_of, mean_estimate,
                                      paired_difference)

TRAIN_WINDOW = 10
RUN_ID = re.compile(r"^[0-9a-f]{32}$")
SAMPLES = re.compile(r"^eval/samples_step_(\d+)\.json$")  # the loop's final-eval samples table
# params that say where/how a run was executed, not what it computed: never part of a config diff
NOT_CONFIG = ("run.run_dir", "run.threads", "run.keep_checkpoints", "run.checkpoint_every", "run.checkpoint_minutes",
              "tracking.", "rollout.batch_size", "algo.micro_batch_size", "algo.micro_batch_tokens",
              "prepare.cache_dir", "eval.data_dir", "zppo.samples_to_log")


@dataclass
class RunView:
    """One MLflow run as zppo reads it (`data` is RunStore's dict)."""

    data: dict[str, Any]
    store: Any  # mlflow_tracker.RunStore
    _hist: dict[str, list[tuple[int, float]]] = field(default_factory=dict, repr=False)

    id = property(lambda self: self.data["id"])
    name = property(lambda self: self.data["name"] or self.data["id"][:8])
    status = property(lambda self: self.data["status"])
    params = property(lambda self: self.data["params"])
    tags = property(lambda self: self.data["tags"])
    metrics = property(lambda self: self.data["metrics"])
    method = property(lambda self: self.tags.get("zppo.method", "?"))
    scale = property(lambda self: self.tags.get("zppo.scale", "?"))
    seed = property(lambda self: self.tags.get("zppo.seed", self.params.get("run.seed", "?")))
    run_dir = property(lambda self: self.tags.get("zppo.run_dir"))

    @property
    def steps_done(self) -> int | None:
        return self.data["metric_steps"].get("train/accuracy")

    @property
    def total_steps(self) -> int | None:
        v = self.params.get("run.steps")
        return int(v) if v is not None and str(v).isdigit() else None

    @property
    def seconds(self) -> float | None:
        s, e = self.data["start_time"], self.data["end_time"]
        return (e - s) / 1000.0 if s and e else None

    def history(self, key: str) -> list[tuple[int, float]]:
        if key not in self._hist:
            self._hist[key] = self.store.history(self.id, key)
        return self._hist[key]

    def final_samples(self) -> tuple[int | None, list[dict[str, Any]] | None]:
        """(step, rows) of the per-sample table of the run's last periodic eval (eval/samples_step_NNNNNN.json,
        logged at the final step), or (None, None)."""
        if "_samples" not in self._hist:
            names = sorted(a for a in self.store.artifacts(self.id, "eval") if SAMPLES.match(a))
            found: tuple[int | None, list[dict[str, Any]] | None] = (None, None)
            if names:
                import tempfile

                with tempfile.TemporaryDirectory() as tmp:
                    path = self.store.download(self.id, names[-1], tmp)
                    if path is not None:
                        found = (int(SAMPLES.match(names[-1]).group(1)), read_table(path))
            self._hist["_samples"] = found  # type: ignore[assignment]
        return self._hist["_samples"]  # type: ignore[return-value]

    def step_of(self, key: str) -> int | None:
        return self.data["metric_steps"].get(key)

    def eval_keys(self) -> list[str]:
        """Logged eval scores: `eval/<family>/<benchmark>` and family averages (`…/avg`), averages first."""
        keys = [k for k in self.metrics if k.startswith("eval/")]
        return sorted(keys, key=lambda k: (k.split("/")[1], not k.endswith("/avg"), k))

    def final(self, key: str) -> Estimate | None:
        """The final value of a metric with its uncertainty (see the module docstring)."""
        if key.startswith("eval/"):
            return estimate_of(self.metrics, key)
        if key not in self.metrics:
            return None
        return mean_estimate([v for _, v in self.history(key)[-TRAIN_WINDOW:]])


def read_table(path: Path) -> list[dict[str, Any]]:
    """Rows of a table artifact (MLflow's columns/data JSON; list-valued cells were stored as JSON strings)."""
    raw = json.loads(Path(path).read_text())
    if isinstance(raw, list):
        return raw
    rows = [dict(zip(raw["columns"], r)) for r in raw["data"]]
    for r in rows:
        for k, v in r.items():
            if isinstance(v, str) and v[:1] == "[":
                try:
                    r[k] = json.loads(v)
                except ValueError:
                    pass
    return rows


# ----------------------------------------------------------------------------------------------- finding runs
class Stores:
    """One RunStore per tracking URI (runs of a comparison may live in different stores)."""

    def __init__(self):
        self._by_uri: dict[str, Any] = {}

    def get(self, uri: str):
        from zppo_core.tracking.mlflow_tracker import RunStore, sqlite_path

        if uri not in self._by_uri:
            db = sqlite_path(uri)
            if db is not None and not db.is_file():
                raise ConfigError(f"no MLflow store at {db} (no run logged there yet); train a run first, or point "
                                  "--store / $MLFLOW_TRACKING_URI at the store your runs went to")
            self._by_uri[uri] = RunStore(uri)
        return self._by_uri[uri]


def default_uri(uri: str | None = None, store: str | Path | None = None) -> str:
    from zppo_core.tracking.mlflow_tracker import read_uri

    return read_uri(uri, store)


def list_runs(uri: str, experiment: str, method: str | None = None, scale: str | None = None,
              sweep: str | None = None, stores: Stores | None = None) -> list[RunView]:
    """Training runs of an experiment, newest first (sweep parents and standalone eval runs left out);
    `sweep` keeps the trials of a sweep (its name or its study)."""
    store = (stores or Stores()).get(uri)
    if store.experiment_id(experiment) is None:
        known = ", ".join(store.experiment_names()) or "none"
        raise ConfigError(f"no MLflow experiment '{experiment}' in {uri} (experiments there: {known}); pass "
                          "--experiment NAME")
    flt = []
    if method:
        flt.append(f"tags.`zppo.method` = '{method}'")
    if scale:
        flt.append(f"tags.`zppo.scale` = '{scale}'")
    runs = [RunView(d, store) for d in store.search(experiment, " and ".join(flt))]
    runs = [r for r in runs if r.tags.get("zppo.kind") not in ("sweep", "eval") and "zppo.method" in r.tags]
    if sweep:
        runs = [r for r in runs if sweep in (r.tags.get("zppo.sweep"), r.tags.get("optuna.study"))]
    return runs


def resolve_runs(refs: list[str], uri: str, experiment: str | None = None,
                 stores: Stores | None = None) -> list[RunView]:
    """Runs by run dir (its run.json names the MLflow run and store), MLflow run id, or run name (exact, else a
    unique prefix). One-line ConfigError for anything that is not found or is ambiguous."""
    stores = stores or Stores()
    out: list[RunView] = []
    for ref in refs:
        p = Path(ref).expanduser()
        if p.is_dir():
            rd = RunDir(p)
            if not rd.meta_path.is_file():
                raise ConfigError(f"{ref}: a directory without {rd.meta_path.name} (not a zppo run directory); pass "
                                  "a run dir made by `zppo train`, a run name or an MLflow run id (zppo runs ls)")
            if not rd.mlflow_run_id:
                raise ConfigError(f"{ref}: this run logged nothing to MLflow (tracking.enabled was false)")
            store = stores.get(rd.tracking_uri or uri)
            data = store.get(rd.mlflow_run_id)
            if data is None:
                raise ConfigError(f"{ref}: its MLflow run {rd.mlflow_run_id} is not in {store.uri} (deleted, "
                                  "or the store moved); pass --store or set MLFLOW_TRACKING_URI")
            out.append(RunView(data, store))
            continue
        store = stores.get(uri)
        data = store.get(ref) if RUN_ID.match(ref) else None
        if data is None:
            found = store.by_name(experiment, ref) or store.by_name(experiment, ref, prefix=True)
            if not found:
                raise ConfigError(f"no run named '{ref}' (nor a run dir or run id) in {uri}; list them with "
                                  "`zppo runs ls`")
            if len(found) > 1:
                names = ", ".join(f"{d['name']} ({d['id'][:8]})" for d in found[:6])
                raise ConfigError(f"'{ref}' matches {len(found)} runs ({names}{', …' if len(found) > 6 else ''}); "
                                  "pass a longer name or the run id")
            data = found[0]
        out.append(RunView(data, store))
    return out


# ----------------------------------------------------------------------------------------------- comparing
def _is_config(key: str) -> bool:
    return not any(key == n or (n.endswith(".") and key.startswith(n)) for n in NOT_CONFIG)


def config_diff(runs: list[RunView]) -> list[tuple[str, list[str | None]]]:
    """(param, value per run) for the params whose values differ; None where a run has no such param (the
    section does not apply to its method). Keys in the schema's section order, then alphabetically."""
    keys: list[str] = []
    for r in runs:
        keys += [k for k in r.params if k not in keys and _is_config(k)]
    rows = []
    for k in keys:
        vals = [r.params.get(k) for r in runs]
        if len(set(vals)) > 1:
            rows.append((k, vals))
    order = ["method", "scale", "trial.", "run.", "model.", "data.", "algo.", "rollout.", "optim.", "zppo.", "eval.",
             "prepare."]

    def rank(k: str) -> tuple[int, str]:
        return next((i for i, o in enumerate(order) if k == o or k.startswith(o)), len(order)), k

    return sorted(rows, key=lambda kv: rank(kv[0]))


@dataclass
class Delta:
    """A run's final score minus the first run's, with its 95 % interval (None: no uncertainty known)."""

    value: float
    ci: tuple[float, float] | None
    paired: bool = False  # over the same questions (both runs' final-eval samples), else unpaired


@dataclass
class FinalRow:
    key: str
    label: str
    estimates: list[Estimate | None]
    steps: list[int | None]
    delta_list: list[Delta | None] = field(default_factory=list)

    def deltas(self) -> list[Delta | None]:
        """Each run against the first (None where either score is missing); the first run's own entry is 0."""
        return self.delta_list


def _delta(a: RunView, b: RunView, key: str, ea: Estimate | None, eb: Estimate | None) -> Delta | None:
    if ea is None or eb is None:
        return None
    paired = _paired(a, b, key)
    if paired is not None:
        return Delta(paired[0], paired[1], True)
    d, ci = difference(ea, eb)
    return Delta(d, ci)


def _paired(a: RunView, b: RunView, key: str):
    """The paired difference of an eval score when both runs logged the samples of the eval it comes from."""
    parts = key.split("/")
    if len(parts) != 3 or key.startswith("eval/heldout/"):
        return None
    family, bench = parts[1], parts[2]
    rows = []
    for r in (a, b):
        step, table = r.final_samples()
        if table is None or step != r.step_of(key):
            return None
        rows.append([x for x in table if str(x.get("family", "")).lower() == family])
    benches = sorted({x["benchmark"] for x in rows[0]}) if bench == "avg" else [bench]
    return paired_difference(rows[0], rows[1], benches)


def final_table(runs: list[RunView], extra: list[str] | None = None, benchmarks: bool = True) -> list[FinalRow]:
    """Final scores side by side: eval family averages and benchmarks, held-out accuracy, then training accuracy
    (mean of the last steps) and any `extra` metrics; each with its difference to the first run."""
    keys: list[str] = []
    for r in runs:
        for k in r.eval_keys():
            if k.startswith("eval/heldout/") and k != "eval/heldout/accuracy":
                continue  # per level / family breakdowns of the held-out score: the report has them
            if k not in keys and (benchmarks or k.endswith("/avg") or k == "eval/heldout/accuracy"):
                keys.append(k)
    keys = sorted(keys, key=lambda k: (k.startswith("eval/heldout"), k.split("/")[1], not k.endswith("/avg"), k))
    for k in ["train/accuracy"] + list(extra or []):
        if k not in keys and any(k in r.metrics for r in runs):
            keys.append(k)
    # a family with one benchmark: its average is that benchmark, shown once
    single = {}
    for k in keys:
        parts = k.split("/")
        if k.startswith("eval/") and len(parts) == 3 and not k.endswith("/avg") and parts[1] != "heldout":
            single.setdefault(parts[1], []).append(parts[2])
    single = {f: b[0] for f, b in single.items() if len(b) == 1}
    keys = [k for k in keys if not (k.count("/") == 2 and k.split("/")[1] in single and not k.endswith("/avg")
                                    and f"eval/{k.split('/')[1]}/avg" in keys)]
    rows = []
    for k in keys:
        label = k.removeprefix("eval/") if k.startswith("eval/") else f"{k} (last {TRAIN_WINDOW} steps)"
        fam = k.split("/")[1] if k.startswith("eval/") else None
        if k.endswith("/avg") and fam in single:
            label = f"{fam}/{single[fam]}"
        ests = [r.final(k) for r in runs]
        deltas = [_delta(runs[0], r, k, ests[0], e) for r, e in zip(runs, ests)]
        rows.append(FinalRow(k, label, ests, [r.step_of(k) for r in runs], deltas))
    return rows


def verdict(row: FinalRow, names: list[str]) -> str | None:
    """One line for two runs: which did better on this metric, by how much, with what uncertainty."""
    if len(row.estimates) != 2 or None in row.estimates:
        return None
    delta = row.deltas()[1]
    d, ci = delta.value, delta.ci
    a, b = row.estimates
    if abs(d) < 0.05:  # no difference at the shown precision
        text = f"{row.label}: {names[0]} and {names[1]} equal ({a.value:.1f})"
    else:
        better, worse = (names[1], names[0]) if d > 0 else (names[0], names[1])
        text = f"{row.label}: {better} +{abs(d):.1f} points over {worse}"
    if ci is None:
        return text + " (no uncertainty logged)"
    lo, hi = ci
    sign = -1 if d < 0 else 1  # the interval of the better run's lead
    lo, hi = sorted((sign * lo, sign * hi))
    how = "paired" if delta.paired else "unpaired"
    sig = "excludes 0" if lo > 0 or hi < 0 else "within noise"
    return text + f"; 95% CI {lo:+.1f} to {hi:+.1f} ({how}): {sig}"


# ----------------------------------------------------------------------------------------------- plots
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def run_colors(n: int) -> list[Any]:
    """Distinct colours for n runs (tab10, then tab20's extra shades)."""
    plt = _plt()
    base = list(plt.get_cmap("tab10").colors) + list(plt.get_cmap("tab20").colors[1::2])
    return [base[i % len(base)] for i in range(n)]


def plot_curves(runs: list[RunView], keys: list[str], path: Path, title: str | None = None) -> Path:
    """One panel per metric, every run's curve overlaid in its own colour (eval scores with 95 % bands when n/se
    were logged). Returns the PNG's path."""
    plt = _plt()
    from matplotlib.ticker import MaxNLocator

    cols = 1 if len(keys) == 1 else 2
    rows = (len(keys) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(6.2 * cols, 3.4 * rows), squeeze=False)
    colors = run_colors(len(runs))
    for ax, key in zip(axes.flat, keys):
        for r, c in zip(runs, colors):
            pts = r.history(key)
            if not pts:
                continue
            xs, ys = zip(*pts)
            ax.plot(xs, ys, color=c, lw=1.6, marker="." if len(xs) < 15 else None, label=r.name)
            if key.startswith("eval/"):
                se = dict(r.history(SE_PREFIX + key.removeprefix("eval/")))
                n = dict(r.history(N_PREFIX + key.removeprefix("eval/")))
                band = [Estimate(y, int(n[x]) if x in n else None, se.get(x)).interval() for x, y in pts]
                if all(b is not None for b in band):
                    ax.fill_between(xs, [b[0] for b in band], [b[1] for b in band], color=c, alpha=0.15, lw=0)
        ax.set_title(key, fontsize=10)
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if not handles:
        for ax in axes.flat:
            handles, labels = ax.get_legend_handles_labels()
            if handles:
                break
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 3), fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0.06 + 0.02 * ((len(labels) - 1) // 3 if handles else 0), 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def default_curve_keys(runs: list[RunView]) -> list[str]:
    """The eval family averages the runs have, then training accuracy."""
    keys: list[str] = []
    for r in runs:
        keys += [k for k in r.eval_keys() if k.endswith("/avg") and k not in keys]
    return keys + ["train/accuracy"]


def summarize(runs: list[RunView]) -> list[dict[str, Any]]:
    """Plain rows for `zppo runs ls --json`: identity, progress and final scores of each run."""
    out = []
    for r in runs:
        row: dict[str, Any] = {"name": r.name, "id": r.id, "method": r.method, "scale": r.scale, "seed": r.seed,
                               "steps": r.steps_done, "total_steps": r.total_steps, "status": r.status,
                               "train_accuracy": r.metrics.get("train/accuracy"), "run_dir": r.run_dir,
                               "sweep": r.tags.get("zppo.sweep"), "eval": {}}
        for k in r.eval_keys():
            if k.endswith("/avg") or k == "eval/heldout/accuracy":
                e = r.final(k)
                row["eval"][k.removeprefix("eval/")] = {"value": e.value, "n": e.n, "se": e.se, "step": r.step_of(k)}
        out.append(row)
    return out
