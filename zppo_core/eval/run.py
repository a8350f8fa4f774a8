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
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from zppo_core.config import ConfigError, apply_overrides, config_from_file, load_config
from zppo_core.config.schema import ZPPOConfig
from zppo_core.eval.evaluate import EvalReport, Progress, evaluate_suites, plan_suites
from zppo_core.train.checkpoint import write_atomic

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
    scale: str = "tiny",
    overrides: list[str] | None = None,
) -> EvalTarget:
    """Which weights and which config; ConfigError (one line naming the fix) for anything missing."""
    if run is not None and model is not None:
        raise ConfigError("give either --run RUN_DIR or --model PATH, not both")
    if checkpoint is not None and run is None:
        raise ConfigError("--checkpoint picks a checkpoint of a run; add --run RUN_DIR")
    if run is not None:
        run = Path(run)
        if not (run / "config.yaml").is_file():
            raise ConfigError(f"--run {run}: no config.yaml there (not a zppo run directory); pass a directory "
                              "created by `zppo train`")
        cfg = config_from_file(run / "config.yaml")
        cfg = apply_overrides(cfg, overrides or [])
        ckpt = _checkpoint_dir(run, checkpoint)
        meta = json.loads((run / "run.json").read_text()) if (run / "run.json").is_file() else {}
        step = int(ckpt.name.split("_")[-1])
        return EvalTarget("run", f"{run.name}@{step}", cfg, str(ckpt / "model"), run, step,
                          meta.get("mlflow_run_id"), cfg.method)
    cfg = load_config(scale, overrides=list(overrides or []))
    if model is not None:
        p = Path(model).expanduser()
        if not (p / "config.json").is_file():
            raise ConfigError(f"--model {model}: not a Hugging Face model directory (no config.json); pass a local "
                              "model directory (e.g. one saved with save_pretrained)")
        return EvalTarget("model", p.name, cfg, str(p))
    if cfg.model.student == "tiny":
        return EvalTarget("scale", "tiny-base", cfg, None)
    from zppo_core.train.run import _resolve_model

    return EvalTarget("scale", f"{scale}-base", cfg, _resolve_model(cfg.model.student, "model.student"))


def _checkpoint_dir(run: Path, checkpoint: str | None) -> Path:
    from zppo_core.train.checkpoint import latest_checkpoint

    root = run / "checkpoints"
    if checkpoint in (None, "latest"):
        ckpt = latest_checkpoint(run)
        if ckpt is None:
            raise ConfigError(f"--run {run}: no checkpoint yet; wait for the first one (run.checkpoint_every) or "
                              "train longer")
        return ckpt
    try:
        step = int(checkpoint)
    except ValueError:
        raise ConfigError(f"--checkpoint {checkpoint!r}: give a step number or 'latest'") from None
    ckpt = root / f"step_{step:06d}"
    if not (ckpt / "model").is_dir():
        have = sorted(p.name for p in root.glob("step_*")) if root.is_dir() else []
        raise ConfigError(f"--checkpoint {step}: {ckpt} does not exist; available: {', '.join(have) or 'none'}")
    return ckpt


def _load(cfg: ZPPOConfig, path: str | None, who: str, log: Callable[[str], None]):
    """(engine, render) for a model directory, or for the prepared tiny student/teacher when path is None.
    A vision-language model (its config has a `vision_config`) is loaded with AutoModelForImageTextToText and
    its AutoProcessor, which the engine uses to feed images."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from zppo_core.train.loop import render
    from zppo_core.train.run import _device, make_engine

    hf_logging.disable_progress_bar()
    if path is None:
        from zppo_core.train.prepare import ensure_prepared, is_prepared

        if not is_prepared(cfg):
            log("preparing the tiny student and teacher (SFT, cached for later runs)...")
        path = str(ensure_prepared(cfg, log) / who)
    dtype = torch.bfloat16 if cfg.model.dtype == "bfloat16" else torch.float32
    processor = None
    if getattr(AutoConfig.from_pretrained(path), "vision_config", None) is not None:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        try:
            processor = AutoProcessor.from_pretrained(path)
        except (AttributeError, ImportError, TypeError, ValueError) as err:
            raise ConfigError(f"{path}: a vision-language model whose processor does not load ({err}); the "
                              "Qwen-VL processors need torchvision (pip install torchvision)") from None
        tok = processor.tokenizer
        model_cls = AutoModelForImageTextToText
    else:
        tok = AutoTokenizer.from_pretrained(path)
        model_cls = AutoModelForCausalLM
    tok.padding_side = "left"
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    model = model_cls.from_pretrained(path, dtype=dtype).to(_device(cfg)).eval()
    cache: dict[str, list[int]] = {}

    def rend(text) -> list[int]:
        key = text if isinstance(text, str) else json.dumps(text)
        if key not in cache:
            cache[key] = render(tok, text, processor)  # a VLM's chat template is its processor's
        return cache[key]

    if processor is None:
        return make_engine(cfg, model, tok), rend
    if cfg.rollout.engine == "vllm":
        from zppo_core.rollout.vllm_engine import VLLMEngine

        # image placeholders expand to many tokens (up to 1280 per image at the paper's pixel bounds)
        return VLLMEngine.from_model(model, tok, cfg, processor=processor, max_prompt_len=8192), rend
    from zppo_core.rollout.hf import TransformersEngine

    return TransformersEngine(model, tok, batch_size=cfg.rollout.batch_size, processor=processor), rend


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


def evaluate_target(
    target: EvalTarget,
    suite: str,
    data_dir: str | None = None,
    judge: str = "teacher",
    out_dir: Path | None = None,
    progress: Progress | None = None,
    log: Callable[[str], None] = lambda s: None,
    track: bool = True,
) -> EvalOutcome:
    """Evaluate, write results.json + samples.jsonl, log to MLflow. `judge`: teacher | none | a model dir."""
    t0 = time.perf_counter()
    cfg = target.cfg
    out = out_dir or _default_out(target, suite)
    if judge not in ("teacher", "none") and not (Path(judge).expanduser() / "config.json").is_file():
        raise ConfigError(f"--judge {judge}: use teacher, none, or a local Hugging Face model directory")
    if cfg.run.threads:
        import torch

        torch.set_num_threads(cfg.run.threads)
    tiny, paper = plan_suites(suite)  # bad suite names fail before any model is loaded
    if not tiny and paper:
        from zppo_core.eval.data import data_path, default_data_dir, missing_message

        root = data_dir or cfg.eval.data_dir or default_data_dir()
        if not any(data_path(b, root) for b in paper):  # nothing to evaluate: say what is missing, load nothing
            report = EvalReport(skipped={b.name: missing_message(b, root) for b in paper})
            write_results(out, target, suite, report, {})
            return EvalOutcome(report, out, None, target, time.perf_counter() - t0, {})
    engine, render = _load(cfg, target.model_path, "student", log)
    judge_engine = None
    if judge == "teacher":
        from zppo_core.train.run import _resolve_model

        teacher = None if cfg.model.teacher == "tiny" else _resolve_model(cfg.model.teacher, "model.teacher")
        judge_engine = LazyEngine(lambda: _load(cfg, teacher, "teacher", log))
    elif judge != "none":
        judge_engine = LazyEngine(lambda: _load(cfg, str(Path(judge).expanduser()), "judge", log))
    report = evaluate_suites(
        engine, render, suite, cfg.eval, train_families=list(cfg.data.families), closer=cfg.data.closer,
        judge=judge_engine, judge_render=judge_engine.render if judge_engine else None,
        scale=_reference_key(target), data_dir=data_dir, progress=progress,
    )
    fam_ref = family_reference(target, report)
    write_results(out, target, suite, report, fam_ref)
    run_id = log_to_mlflow(target, suite, report, out) if track and cfg.tracking.enabled else None
    return EvalOutcome(report, out, run_id, target, time.perf_counter() - t0, fam_ref)


def _reference_key(target: EvalTarget) -> str | None:
    """Which column of the paper's per-benchmark table to compare with."""
    scale = target.cfg.scale
    if scale == "tiny":
        return None
    if target.kind == "run":
        return scale if target.method == "zppo" else None
    return "base-0.8b" if scale == "0.8b" else None


def family_reference(target: EvalTarget, report: EvalReport) -> dict[str, float | None]:
    from zppo_core.eval.benchmarks import FAMILY_AVERAGES

    row = FAMILY_AVERAGES.get(PAPER_METHOD.get(target.method if target.kind == "run" else "base", ""), {})
    return {fam: row.get(fam, {}).get(target.cfg.scale) for fam in report.family_averages()}


def _slug(suite: str) -> str:
    s = "".join(c if c.isalnum() or c in "-_" else "-" for c in suite.lower())
    return s[:60] or "suite"


def _default_out(target: EvalTarget, suite: str) -> Path:
    if target.run_dir is not None:
        return target.run_dir / "eval" / f"step_{target.step:06d}-{_slug(suite)}"
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
        "family_averages": {k: {"score": round(v, 2), "reference": fam_ref.get(k)} for k, v in fams.items()},
        "skipped": report.skipped,
        "metrics": report.metrics(),
    }
    write_atomic(out / "results.json", json.dumps(payload, indent=2))
    write_atomic(out / "samples.jsonl", "".join(json.dumps(r.to_dict()) + "\n" for r in report.records()))


def log_to_mlflow(target: EvalTarget, suite: str, report: EvalReport, out: Path) -> str | None:
    """Into the training run at the checkpoint's step (keeping its status), or into a new eval run."""
    from zppo_core.tracking.mlflow_tracker import MlflowTracker

    cfg = target.cfg
    metrics = report.metrics()
    if target.kind == "run" and target.mlflow_run_id:
        meta = json.loads((target.run_dir / "run.json").read_text()) if target.run_dir else {}
        uri = meta.get("tracking_uri") or cfg.tracking.uri
        status = MlflowTracker.run_status(target.mlflow_run_id, uri)
        tracker = MlflowTracker(cfg.tracking.experiment, uri=uri, run_id=target.mlflow_run_id)
        tracker.log_metrics(metrics, step=target.step or 0)
        tracker.log_artifact(out / "results.json", f"eval/{out.name}")
        tracker.log_artifact(out / "samples.jsonl", f"eval/{out.name}")
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
    tracker.finish("FINISHED")
    return tracker.run_id
