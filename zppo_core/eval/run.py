"""`zppo eval` without the CLI: which model, which config, evaluate, write results, log to MLflow.

A target is one of
  * a zppo run directory (its latest or a given checkpoint; the run's own config gives the eval settings and
    the judge = its teacher; scores go into the training run's MLflow run at the checkpoint's step),
  * any local Hugging Face model directory (`--model`),
  * a preset's base student (`--scale`; at tiny scale the prepared tiny student).
Outside a run, scores go to a new MLflow run tagged `zppo.kind=eval` and `zppo.model=<path>`.

Results: `results.json` (per benchmark: n, score, paper reference, delta; family averages; skipped benchmarks
with the reason) and `samples.jsonl` (benchmark, question id, sample, response, extracted answer, verdict,
how it was decided), written atomically into the output directory.

Models come from `zppo_core.models.load` and engines from `zppo_core.rollout.make_engine`. The prepared tiny
pair (a `tiny` scale's base student, a tiny run's teacher as judge) is built by `train.prepare`, which eval does
not import: the caller passes `prepare` (zppo_cli passes `train.run.prepare_tiny`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from zppo_core.config import ConfigError, apply_overrides, load_config
from zppo_core.config.schema import ZPPOConfig
from zppo_core.models.load import PromptRenderer, chat_kwargs, is_tiny, load_model, resolve_model
from zppo_core.run_dir import RunDir, write_atomic
from zppo_core.suites.evaluate import EvalReport, Progress, evaluate_suites, plan_suites

Prepare = Callable[[ZPPOConfig, Callable[[str], None]], Path]  # (cfg, log) -> the prepared tiny pair's directory

# our method name -> the paper's row in its family-average tables
PAPER_METHOD = {"base": "Base", "grpo": "GRPO", "grpo_buffer": "GRPO†", "grpo_both": "GRPO+Both (no buffer)",
                "grpo_buffer_bcq": "GRPO†+BCQ", "grpo_buffer_ncq": "GRPO†+NCQ", "zppo": "ZPPO"}


@dataclass
class EvalTarget:
    kind: str  # run | model | scale
    label: str  # short name for tables, run names and output folders
    cfg: ZPPOConfig  # eval settings, closer, training families, judge (teacher), tracking
    model_path: str | None  # a Hugging Face model directory (None: the prepared tiny student, built on demand)
    run_dir: Path | None = None
    step: int | None = None  # the evaluated checkpoint's step
    mlflow_run_id: str | None = None
    method: str = "base"  # what produced the weights (for the paper's family-average reference)


@dataclass
class EvalOutcome:
    report: EvalReport
    out_dir: Path
    mlflow_run_id: str | None
    target: EvalTarget
    seconds: float
    family_reference: dict[str, float | None] = field(default_factory=dict)


def resolve_target(
    run: Path | None = None,
    checkpoint: str | None = None,
    model: str | None = None,
    scale: str | None = None,
    overrides: list[str] | None = None,
    files: list | tuple = (),
) -> EvalTarget:
    """Which weights and which config; ConfigError (one line naming the fix) for anything missing."""
    if run is not None and model is not None:
        raise ConfigError("give either --run RUN_DIR or --model PATH, not both")
    if checkpoint is not None and run is None:
        raise ConfigError("--checkpoint picks a checkpoint of a run; add --run RUN_DIR")
    if run is not None:
        rd = RunDir(run)
        if not rd.is_run():
            raise ConfigError(f"--run {run}: no config.yaml there (not a zppo run directory); pass a directory "
                              "created by `zppo train`")
        cfg = apply_overrides(rd.read_config(), overrides or [], files)
        ckpt = _checkpoint_dir(rd, checkpoint)
        if not (ckpt / "model").is_dir():  # a multi-rank run's sharded checkpoint: its HF export, made once
            from zppo_core.dist.checkpoint import export_hf

            export_hf(ckpt)
        step = RunDir.step_of(ckpt)
        return EvalTarget("run", f"{rd.name}@{step}", cfg, str(ckpt / "model"), rd.path, step,
                          rd.mlflow_run_id, cfg.method)
    cfg = load_config(scale, overrides=list(overrides or []), files=files)
    if model is not None:
        p = Path(model).expanduser()
        if not (p / "config.json").is_file():
            raise ConfigError(f"--model {model}: not a Hugging Face model directory (no config.json); pass a local "
                              "model directory (e.g. one saved with save_pretrained)")
        return EvalTarget("model", p.name, cfg, str(p))
    if is_tiny(cfg.model.student):
        return EvalTarget("scale", f"{cfg.model.student}-base", cfg, None)
    return EvalTarget("scale", f"{cfg.scale}-base", cfg, resolve_model(cfg.model.student, "model.student"))


def _checkpoint_dir(rd: RunDir, checkpoint: str | None) -> Path:
    if checkpoint in (None, "latest"):
        ckpt = rd.latest_checkpoint()
        if ckpt is None:
            raise ConfigError(f"--run {rd.path}: no checkpoint yet; wait for the first one (run.checkpoint_every) "
                              "or train longer")
        return ckpt
    try:
        step = int(checkpoint)
    except ValueError:
        raise ConfigError(f"--checkpoint {checkpoint!r}: give a step number or 'latest'") from None
    ckpt = rd.checkpoint(step)
    if not (ckpt / "model").is_dir() and not (ckpt / "dcp").is_dir():
        have = [p.name for p in rd.checkpoint_dirs()]
        raise ConfigError(f"--checkpoint {step}: {ckpt} does not exist; available: {', '.join(have) or 'none'}")
    return ckpt


def _load(cfg: ZPPOConfig, path: str | None, who: str, log: Callable[[str], None], prepare: Prepare | None):
    """(engine, render) for a model directory, or for the prepared tiny student/teacher when path is None. A
    vision-language model comes with its processor, which the engine uses to feed images and `render` as its chat
    template. `render` passes the role's chat-template keywords (the student's; the judge's for a teacher or
    judge, which eval only uses as the judge)."""
    from zppo_core.rollout import make_engine

    if path is None:
        if prepare is None:
            raise ConfigError(f"the tiny {who} is built by `zppo prepare`; pass prepare=zppo_core.train.run."
                              "prepare_tiny to evaluate_target (zppo eval does)")
        path = str(prepare(cfg, log) / who)
    m = load_model(path, cfg)
    role = "student" if who == "student" else "judge"
    render = PromptRenderer.of(m, chat_kwargs(cfg, role), cfg=cfg)
    return make_engine(cfg, m.model, m.tokenizer, m.processor), render


class LazyEngine:
    """An engine built on first use (the judge is loaded only when some answer could not be parsed)."""

    def __init__(self, build: Callable[[], tuple[Any, Callable[[str], list[int]]]]):
        self._build, self._engine, self._render = build, None, None

    def _ensure(self):
        if self._engine is None:
            self._engine, self._render = self._build()
        return self._engine, self._render

    def generate(self, prompts, params):
        return self._ensure()[0].generate(prompts, params)

    def render(self, text: str) -> list[int]:
        return self._ensure()[1](text)


def _served_judge(cfg: ZPPOConfig, judge: str):
    """The judge as a served engine (checked now): `--judge http://...` (with eval.judge_endpoint's name, key and
    timeouts), or `--judge teacher` when the run's teacher is served (model.teacher_endpoint); else None."""
    from zppo_core.config.schema import EndpointConfig
    from zppo_core.rollout import served_engine

    if judge.startswith(("http://", "https://")):
        try:
            endpoint = EndpointConfig.model_validate({**cfg.eval.judge_endpoint.model_dump(), "url": judge})
        except ValueError as err:
            raise ConfigError(f"--judge {judge}: not an http(s) endpoint URL; write it like http://host:8000/v1") from None
        return served_engine(endpoint, role="judge", field="eval.judge_endpoint")
    if judge == "teacher" and cfg.model.teacher_endpoint.url is not None:
        return served_engine(cfg.model.teacher_endpoint, role="teacher", field="model.teacher_endpoint",
                             default_model=cfg.model.teacher)
    return None


def _judge_render(judge_engine, template_kwargs: dict | None = None):
    """What turns the judge's message into its prompt: an in-process judge's renderer; a served judge renders
    with its own chat template (never called then) and gets `template_kwargs` with each request (for the served
    teacher as judge: the judge role's `model.chat_template_kwargs.judge`; a judge endpoint of its own takes
    `eval.judge_endpoint.chat_template_kwargs`)."""
    if judge_engine is None:
        return None
    if isinstance(judge_engine, LazyEngine):
        return judge_engine.render

    def renders_itself(text):
        raise RuntimeError("a served judge takes chat messages; rollout.base.generate_messages sends them")

    renders_itself.template_kwargs = dict(template_kwargs or {})
    return renders_itself


def evaluate_target(
    target: EvalTarget,
    suite: str,
    data_dir: str | None = None,
    judge: str = "teacher",
    out_dir: Path | None = None,
    progress: Progress | None = None,
    log: Callable[[str], None] = lambda s: None,
    track: bool = True,
    prepare: Prepare | None = None,
) -> EvalOutcome:
    """Evaluate, write results.json + samples.jsonl, log to MLflow. `judge`: teacher | none | a model dir | a served
    judge's http(s)://host:port/v1 (eval.judge_endpoint gives its model name, key variable and timeouts).
    `prepare(cfg, log)`: the prepared tiny pair's directory (needed only for tiny models; see the docstring)."""
    t0 = time.perf_counter()
    cfg = target.cfg
    out = out_dir or default_out(target, suite)
    served_judge = judge.startswith(("http://", "https://"))
    if not served_judge and judge not in ("teacher", "none") and not (Path(judge).expanduser() / "config.json").is_file():
        raise ConfigError(f"--judge {judge}: use teacher, none, a local Hugging Face model directory, or a served "
                          "judge's endpoint http://host:port/v1")
    judge_engine = _served_judge(cfg, judge)  # checked before anything is loaded: exit 2 when it does not answer
    if cfg.run.threads:
        import torch

        torch.set_num_threads(cfg.run.threads)
    tiny, paper = plan_suites(suite)  # bad suite names fail before any model is loaded
    if not tiny and paper:
        from zppo_core.suites.data import data_path, default_data_dir, missing_message

        root = data_dir or cfg.eval.data_dir or default_data_dir()
        if not any(data_path(b, root) for b in paper):  # nothing to evaluate: say what is missing, load nothing
            report = EvalReport(skipped={b.name: missing_message(b, root) for b in paper})
            write_results(out, target, suite, report, {})
            return EvalOutcome(report, out, None, target, time.perf_counter() - t0, {})
    engine, render = _load(cfg, target.model_path, "student", log, prepare)
    if judge_engine is None and judge == "teacher":
        teacher = None if is_tiny(cfg.model.teacher) else resolve_model(cfg.model.teacher, "model.teacher")
        judge_engine = LazyEngine(lambda: _load(cfg, teacher, "teacher", log, prepare))
    elif judge_engine is None and judge != "none":
        judge_engine = LazyEngine(lambda: _load(cfg, str(Path(judge).expanduser()), "judge", log, prepare))
    report = evaluate_suites(
        engine, render, suite, cfg.eval, train_families=list(cfg.data.families), closer=cfg.data.closer,
        judge=judge_engine, judge_render=_judge_render(judge_engine, chat_kwargs(cfg, "judge") if judge == "teacher" else None),
        scale=_reference_key(target), data_dir=data_dir, progress=progress,
    )
    fam_ref = family_reference(target, report)
    write_results(out, target, suite, report, fam_ref)
    run_id = log_to_mlflow(target, suite, report, out) if track and cfg.tracking.enabled else None
    return EvalOutcome(report, out, run_id, target, time.perf_counter() - t0, fam_ref)


def _reference_key(target: EvalTarget) -> str | None:
    """Which column of the paper's per-benchmark table to compare with."""
    scale = target.cfg.scale
    if is_tiny(target.cfg.model.student):
        return None
    if target.kind == "run":
        return scale if target.method == "zppo" else None
    return "base-0.8b" if scale == "0.8b" else None


def family_reference(target: EvalTarget, report: EvalReport) -> dict[str, float | None]:
    from zppo_core.suites.benchmarks import FAMILY_AVERAGES

    row = FAMILY_AVERAGES.get(PAPER_METHOD.get(target.method if target.kind == "run" else "base", ""), {})
    return {fam: row.get(fam, {}).get(target.cfg.scale) for fam in report.family_averages()}


def _slug(suite: str) -> str:
    s = "".join(c if c.isalnum() or c in "-_" else "-" for c in suite.lower())
    return s[:60] or "suite"


def default_out(target: EvalTarget, suite: str) -> Path:
    """The run's eval/step_N-<suite>/ for a run's checkpoint, else evals/<label>-<suite>-<time>/."""
    if target.run_dir is not None:
        return RunDir(target.run_dir).eval_dir(target.step, _slug(suite))
    return Path("evals") / f"{target.label}-{_slug(suite)}-{time.strftime('%Y%m%d-%H%M%S')}"


def write_results(out: Path, target: EvalTarget, suite: str, report: EvalReport,
                  fam_ref: dict[str, float | None]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    fams = report.family_averages()
    payload = {
        "suite": suite, "model": target.model_path or "tiny (prepared student)", "label": target.label,
        "kind": target.kind, "scale": target.cfg.scale, "method": target.method, "step": target.step,
        "run_dir": str(target.run_dir) if target.run_dir else None,
        "decoding": target.cfg.eval.model_dump(include={"samples", "temperature", "top_p", "top_k",
                                                        "presence_penalty", "max_new_tokens"}),
        "benchmarks": [r.summary() for r in report.results],
        "family_averages": {k: {"score": round(v, 2), "reference": fam_ref.get(k),
                                "comparable": report.family_comparable().get(k, False) and fam_ref.get(k) is not None}
                            for k, v in fams.items()},
        "skipped": report.skipped,
        "metrics": report.metrics(),
    }
    write_atomic(out / "results.json", json.dumps(payload, indent=2))
    write_atomic(out / "samples.jsonl", "".join(json.dumps(r.to_dict()) + "\n" for r in report.records()))


def log_to_mlflow(target: EvalTarget, suite: str, report: EvalReport, out: Path) -> str | None:
    """Into the training run at the checkpoint's step (keeping its status), or into a new eval run."""
    from zppo_core.tracking.mlflow_tracker import MlflowTracker

    from zppo_core.tracking.stats import eval_uncertainty, sample_rows

    cfg = target.cfg
    metrics = {**report.metrics(), **eval_uncertainty(report.results)}  # each score with its n and se
    samples = sample_rows(report.results)  # an MLflow table; samples.jsonl beside it has them all, whole
    if target.kind == "run" and target.mlflow_run_id:
        uri = (RunDir(target.run_dir).tracking_uri if target.run_dir else None) or cfg.tracking.uri
        status = MlflowTracker.run_status(target.mlflow_run_id, uri)
        tracker = MlflowTracker(cfg.tracking.experiment, uri=uri, run_id=target.mlflow_run_id)
        tracker.log_metrics(metrics, step=target.step or 0)
        tracker.log_artifact(out / "results.json", f"eval/{out.name}")
        tracker.log_artifact(out / "samples.jsonl", f"eval/{out.name}")
        tracker.log_table(samples, f"eval/{out.name}/samples.json")
        if status != "RUNNING":  # opening a run marks it RUNNING; give it back its state
            tracker.finish(status)
        return tracker.run_id
    tracker = MlflowTracker(
        cfg.tracking.experiment, uri=cfg.tracking.uri, run_name=f"eval-{target.label}",
        tags={"zppo.kind": "eval", "zppo.model": target.model_path or "tiny", "zppo.scale": cfg.scale,
              "zppo.suite": suite, **cfg.tracking.tags},
    )
    tracker.log_params({"suite": suite, "model": target.model_path or "tiny", "scale": cfg.scale,
                        "eval.samples": cfg.eval.samples, "eval.limit": cfg.eval.limit,
                        "eval.temperature": cfg.eval.temperature})
    tracker.log_metrics(metrics, step=0)
    tracker.log_artifact(out / "results.json", "eval")
    tracker.log_artifact(out / "samples.jsonl", "eval")
    tracker.log_table(samples, "eval/samples.json")
    tracker.finish("FINISHED")
    return tracker.run_id

