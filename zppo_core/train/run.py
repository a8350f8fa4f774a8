"""One training run from a resolved config: preflight, run directory, models, tracker, loop, resume.

`preflight` checks everything that can be checked before any compute or any file is created (CUDA, model
paths, data, run directory); `train` then builds the pieces and runs the loop. A run that fails during setup
removes the run directory and MLflow run it created, so bad input leaves nothing half-written behind.

Models load through `zppo_core.models.load` (the student in its fp32 master dtype, frozen models in the compute
dtype: `zppo_core.models.precision`), engines come from `zppo_core.rollout.make_engine`, and every file of the
run directory is written and read through `zppo_core.run_dir.RunDir`. The training judge (`reward.judge`) is
built by `make_judge`: none, the teacher's engine, or a model directory loaded frozen with its own tokenizer.

Several ranks (`zppo train --nproc N`, torchrun, a multi-task Slurm job; `zppo_core.dist`): every rank calls
`train`. Rank 0 runs the preflight, creates the run directory, prepares the tiny models and opens the MLflow run;
the other ranks wait for it and get its errors (so a bad input stops all of them with the same message) and a null
tracker. Each rank loads the student, keeps a full copy for its rollout engine and shards the trained one with
FSDP2 (`dist/fsdp.py`, with the precision's mixed-precision policy); the teacher (and a judge) is loaded on every
rank (in-process) unless it is served.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from zppo_core.config import ConfigError
from zppo_core.config.schema import ZPPOConfig
from zppo_core.models.load import is_tiny, resolve_model
from zppo_core.run_dir import RunDir


@dataclass
class RunResult:
    run_dir: Path
    mlflow_run_id: str | None
    history: list[dict[str, float]]
    prepare_report: dict[str, Any] | None
    seconds: float
    method_summary: dict[str, Any]
    stopped_early: bool = False  # on_step asked to stop before run.steps (e.g. a pruned sweep trial)
    preempted: bool = False  # a stop was requested (Slurm time limit/preemption): checkpointed, MLflow run open
    interrupted: bool = False  # stop_requested() stopped it before run.steps (checkpointed; resume continues it)


def default_run_dir(cfg: ZPPOConfig) -> Path:
    from zppo_core.train.record import default_name

    return Path("runs") / default_name(cfg)  # also the MLflow run name


def preflight(cfg: ZPPOConfig, run_dir: Path | None, resume: bool) -> Path:
    """Every check that needs no compute. Returns the run directory to use (not yet created)."""
    if cfg.model.requires_cuda or cfg.model.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(
                f"preset '{cfg.scale}' needs CUDA GPUs but this machine has none; run it on a GPU node "
                "(e.g. --executor slurm) or use --scale tiny here"
            )
    if cfg.rollout.engine == "vllm":
        import importlib.util

        if importlib.util.find_spec("vllm") is None:
            raise ConfigError(
                "rollout.engine=vllm but vLLM is not installed; pip install 'zppo[vllm]' on the GPU machine "
                "or --set rollout.engine=transformers"
            )
        if cfg.model.student == "tiny":
            from zppo_core.rollout.vllm_engine import CPU_HEAD_DIMS

            for name, spec in (("tiny_student", cfg.model.tiny_student), ("tiny_teacher", cfg.model.tiny_teacher)):
                if spec.head_dim not in CPU_HEAD_DIMS:
                    raise ConfigError(
                        f"model.{name}.head_dim={spec.head_dim}: vLLM's CPU attention takes head_dim "
                        f"{', '.join(map(str, CPU_HEAD_DIMS))}; --set model.{name}.head_dim=32"
                    )
    resolve_model(cfg.model.student, "model.student")
    from zppo_core.rollout import teacher_is_served

    if teacher_is_served(cfg):
        check_served_teacher(cfg)  # reachable and serving the model, before any file or compute
    else:
        resolve_model(cfg.model.teacher, "model.teacher")
    check_judge(cfg)
    if not is_tiny(cfg.model.student):
        if cfg.data.path is None:
            raise ConfigError(
                f"data.path is required at scale '{cfg.scale}' (the synthetic families are for tiny models); "
                "--set data.path=/path/to/train.jsonl"
            )
        if not Path(cfg.data.path).is_file():
            raise ConfigError(f"data.path: {cfg.data.path} does not exist; --set data.path=/path/to/train.jsonl")
    else:
        from zppo_core.tasks import get_family

        for name in cfg.data.families:
            try:
                get_family(name)
            except ValueError as err:
                raise ConfigError(f"data.families: {err}") from None
        from zppo_core.tasks import is_visual

        visual = [f for f in cfg.data.families if is_visual(f)]
        if visual and cfg.model.student == "tiny":
            raise ConfigError(f"data.families: {', '.join(visual)} are visual (their questions are images) but the "
                              "tiny student is text-only; use --scale tiny-vl")
    if resume:
        from zppo_core.train.checkpoint import CheckpointError, require_checkpoint

        assert run_dir is not None
        try:
            require_checkpoint(run_dir)
        except CheckpointError as err:
            raise ConfigError(str(err)) from None
        return Path(run_dir)
    rd = Path(run_dir) if run_dir is not None else (Path(cfg.run.run_dir) if cfg.run.run_dir else default_run_dir(cfg))
    if rd.exists() and not rd.is_dir():
        raise ConfigError(f"run dir {rd} is a file, not a directory; choose another --run-dir")
    if not RunDir(rd).is_empty():
        raise ConfigError(f"run dir {rd} already exists and is not empty; use --resume {rd} or another --run-dir")
    parent = rd if rd.exists() else rd.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"run dir {rd}: {parent} is a file, not a directory; choose another --run-dir")
    try:  # the real test of writability (works for root and read-only filesystems alike)
        import tempfile

        tempfile.TemporaryDirectory(dir=parent, prefix=".zppo-probe-").cleanup()
    except OSError as err:
        raise ConfigError(f"run dir {rd}: {parent} is not writable ({err.strerror}); choose a writable --run-dir") from None
    check_tracking(cfg)
    return rd


def check_served_teacher(cfg: ZPPOConfig) -> None:
    """The served teacher answers and serves the model (when the method uses a teacher or it is the judge), and is
    vLLM's server if the roles it plays have chat-template keywords; ConfigError otherwise."""
    from zppo_core.rollout import served_engine
    from zppo_core.rollout.openai_engine import EndpointError
    from zppo_core.train.methods.registry import build_method

    needs_teacher = build_method(cfg).needs_teacher
    if not needs_teacher and cfg.reward.judge != "teacher":
        return
    try:
        engine = served_engine(cfg.model.teacher_endpoint, role="teacher", field="model.teacher_endpoint",
                               default_model=cfg.model.teacher)
        engine.close()
    except EndpointError as err:
        raise ConfigError(str(err)) from None
    roles = (["teacher", "compression"] if needs_teacher else []) + (["judge"] if cfg.reward.judge == "teacher" else [])
    keyed = [r for r in roles if getattr(cfg.model.chat_template_kwargs, r)]
    if keyed and not engine.is_vllm:  # only vLLM's server takes chat_template_kwargs; say so before any compute
        raise ConfigError(f"model.chat_template_kwargs.{keyed[0]}: the served teacher at "
                          f"{cfg.model.teacher_endpoint.url} is not vLLM's server, which alone takes chat-template "
                          f"keywords; --set model.chat_template_kwargs.{keyed[0]}={{}} (or serve it with zppo serve "
                          "teacher)")


def check_judge(cfg: ZPPOConfig) -> None:
    """`reward.judge` names something loadable: none, teacher, or a local model directory (ConfigError)."""
    judge = cfg.reward.judge
    if judge in ("none", "teacher"):
        return
    if judge.startswith(("http://", "https://")):
        raise ConfigError(f"reward.judge={judge}: a served judge endpoint is not supported for training yet; use "
                          "--set reward.judge=teacher (the teacher at temperature 0) or a local model directory")
    if not (Path(judge).expanduser() / "config.json").is_file():
        raise ConfigError(f"reward.judge={judge}: use none, teacher, or a local Hugging Face model directory (one "
                          "with a config.json)")


def make_judge(cfg: ZPPOConfig, teacher, tokenizer):
    """(judge engine, render) for `reward.judge`, or (None, None): the teacher's engine rendered with the student's
    tokenizer (the pair shares it) and the judge role's chat-template keywords, or a model directory loaded frozen
    (compute dtype) with its own tokenizer and chat template."""
    from zppo_core.models.load import PromptRenderer, chat_kwargs, load_model
    from zppo_core.rollout import make_engine

    judge = cfg.reward.judge
    if judge == "none":
        return None, None
    if judge == "teacher":
        return teacher, PromptRenderer(tokenizer, template_kwargs=chat_kwargs(cfg, "judge"))
    m = load_model(str(Path(judge).expanduser()), cfg)
    render = PromptRenderer.of(m, chat_kwargs(cfg, "judge"), cfg=cfg)
    return make_engine(cfg, m.model, m.tokenizer, m.processor), render


def make_stream(cfg: ZPPOConfig):
    if cfg.data.path:
        from zppo_core.tasks.jsonl_data import JsonlStream

        return JsonlStream(cfg.data.path, cfg.run.seed, cfg.data.image_dir)
    from zppo_core.tasks import QuestionStream

    return QuestionStream(cfg.data.families, cfg.data.levels, cfg.run.seed)


def _has_images(cfg: ZPPOConfig, stream) -> bool:
    if cfg.data.path:
        return any(q.images for q in stream.items)
    from zppo_core.tasks import is_visual

    return any(is_visual(f) for f in cfg.data.families)


def check_tracking(cfg: ZPPOConfig) -> None:
    """A tracking server named by tracking.uri or $MLFLOW_TRACKING_URI answers within tracking.connect_timeout_s
    (one request, no retries); ConfigError otherwise. Local stores are not checked (nothing is created here)."""
    import os

    uri = cfg.tracking.uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not cfg.tracking.enabled or not uri or not uri.startswith(("http://", "https://")):
        return
    from zppo_core.tracking.mlflow_tracker import check_reachable

    why = check_reachable(uri, cfg.tracking.connect_timeout_s)
    if why is not None:
        raise ConfigError(
            f"tracking server {uri} {why}; start it or fix tracking.uri / $MLFLOW_TRACKING_URI, or train without it "
            f"(--set tracking.enabled=false) and send the run later with `zppo sync RUN_DIR --uri {uri}`"
        )


def make_tracker(cfg: ZPPOConfig, run_dir: Path, run_id: str | None, resume: bool = False,
                 log: Callable[[str], None] | None = None):
    """The run's tracker: local records first, sent to MLflow in the background (`tracking.durable`); with
    tracking.enabled=false the records stay in the run dir (`zppo sync` sends them later)."""
    from zppo_core.tracking.durable import DurableTracker
    from zppo_core.train.record import provenance_tags, run_name

    return DurableTracker(
        run_dir,
        cfg.tracking.experiment,
        uri=cfg.tracking.uri,
        run_id=run_id,
        resume=resume,
        run_name=run_name(cfg, run_dir),
        tags={"zppo.method": cfg.method, "zppo.scale": cfg.scale, "zppo.seed": str(cfg.run.seed),
              "zppo.run_dir": str(run_dir.resolve()), **provenance_tags(cfg), **cfg.tracking.tags},
        parent_run_id=cfg.tracking.parent_run_id,
        enabled=cfg.tracking.enabled,
        flush_timeout_s=cfg.tracking.flush_timeout_s,
        warn=log,
    )


def prepare_tiny(cfg: ZPPOConfig, log: Callable[[str], None] = lambda s: None) -> Path:
    """The prepared tiny pair's directory (student/, teacher/, report.json), preparing it first (SFT, cached for
    later runs) when it is not yet. `zppo eval` gets it from its caller: eval does not import train."""
    from zppo_core.train.prepare import ensure_prepared, is_prepared

    if not is_prepared(cfg):
        log("preparing tiny student and teacher (SFT, cached for later runs)...")
    return ensure_prepared(cfg, log)


def load_models(cfg: ZPPOConfig, need_teacher: bool, log: Callable[[str], None]):
    """(student LoadedModel, teacher LoadedModel or None, prepare report or None)."""
    from zppo_core.models.load import load_pair, model_paths

    prepared = report = None
    if is_tiny(cfg.model.student):
        prepared = prepare_tiny(cfg, log)
        report = json.loads((prepared / "report.json").read_text())
    student_path, teacher_path = model_paths(cfg, prepared)
    student, teacher = load_pair(cfg, student_path, teacher_path if need_teacher else None)
    return student, teacher, report


def train(
    cfg: ZPPOConfig | None,
    run_dir: Path | None = None,
    resume: bool = False,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
    log: Callable[[str], None] = lambda s: None,
    stop_after: int | None = None,
    stop_requested: Callable[[], bool] | None = None,
) -> RunResult:
    """Run (or resume) a training run. With resume=True, cfg may be None: the run's saved config is used.
    Under a multi-rank launcher every rank calls this (see the module docstring); rank 0's result is the run's.
    `stop_requested` is polled after each step: True stops the run there, checkpointed (`RunResult.interrupted`)."""
    from zppo_core.dist import init_from_env

    t0 = time.perf_counter()
    d = init_from_env()
    log = log if d.is_main else _silent
    if resume:
        assert run_dir is not None
        cfg = cfg or RunDir(run_dir).read_config()
        rd = RunDir(d.on_main(lambda: preflight(cfg, run_dir, resume=True)))
    else:
        assert cfg is not None
        rd = RunDir(d.on_main(lambda: preflight(cfg, run_dir, resume=False)))
    stream = make_stream(cfg)  # bad data (e.g. a missing image, file:line) fails here, before anything is written

    import torch

    from zppo_core.rollout import make_engine, teacher_engine, teacher_is_served
    from zppo_core.rollout.openai_engine import EndpointError, ServedModelFailed
    from zppo_core.train import checkpoint as ckpt_io
    from zppo_core.train.loop import Trainer
    from zppo_core.train.methods.registry import build_method

    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)
    created = d.on_main(lambda: not rd.exists())
    tracker = None
    try:
        d.main_only(lambda: _create(rd, cfg, resume))
        method = build_method(cfg)
        served = teacher_is_served(cfg)
        wants_teacher = method.needs_teacher or cfg.reward.judge == "teacher"  # for its rollouts, or as the judge
        if d.enabled and cfg.model.student == "tiny":
            d.on_main(lambda: prepare_tiny(cfg, log))  # once; the other ranks then load the cached pair
        student, teacher_model, report = load_models(cfg, wants_teacher and not served, log)
        engine_model = student.model
        if d.enabled:  # the engine samples from a full copy; the trained student is sharded
            import copy

            from zppo_core.dist.fsdp import shard_model
            from zppo_core.models.precision import Precision

            engine_model = copy.deepcopy(student.model).eval().requires_grad_(False)
            precision = Precision.from_config(cfg)
            shard_model(student.model, d, mp_policy=precision.fsdp_mp_policy() if precision.mixed else None)
        engine = make_engine(cfg, engine_model, student.tokenizer, student.processor)
        teacher_eng = teacher_engine(cfg, teacher_model) if wants_teacher else None
        teacher = teacher_eng if method.needs_teacher else None
        tracker = d.main_only(lambda: _open_tracker(cfg, rd, resume, report, log))
        if not d.is_main:
            from zppo_core.tracking import NullTracker

            tracker = NullTracker()
        if student.processor is None and _has_images(cfg, stream):
            raise ConfigError(f"the training questions have images but the student ({cfg.model.student}) is a "
                              "text-only model; use a vision-language student (e.g. --scale tiny-vl or a Qwen3.5 "
                              "checkpoint)")
        judge, judge_render = make_judge(cfg, teacher_eng, student.tokenizer)
        trainer = Trainer(cfg, rd.path, student.model, student.tokenizer, engine, stream, method, tracker, teacher,
                          on_step, judge=judge, judge_render=judge_render,
                          processor=student.processor, dist=d,
                          teacher_model=teacher_model.model if teacher_model is not None else None)
        trainer.stop_requested = stop_requested
        if resume:
            trainer.load_checkpoint(ckpt_io.require_checkpoint(rd.path, verify=True, warn=log))
            if d.is_main:
                rd.truncate_metrics(trainer.state.step)
            log(f"resumed {rd.path} at step {trainer.state.step}")
    except BaseException:
        if d.is_main:
            if tracker is not None and not resume:
                try:
                    tracker.delete()
                except Exception:
                    pass
            if created:
                shutil.rmtree(rd.path, ignore_errors=True)
        raise
    try:
        state = trainer.run(stop_after=stop_after)
    except KeyboardInterrupt:
        tracker.finish("KILLED")
        raise
    except EndpointError as err:  # a served model stopped answering: the last checkpoint is intact, resume later
        tracker.finish("FAILED")
        last = ckpt_io.latest_checkpoint(rd.path)
        where = f"its last checkpoint ({last.name}) is intact" if last is not None else "it has no checkpoint yet"
        raise ServedModelFailed(f"{err} (at step {trainer.state.step + 1}); the run stopped and {where}: bring the "
                                f"server back, then zppo train --resume {rd.path}") from None
    except BaseException:
        tracker.finish("FAILED")
        raise
    stopped = trainer.stopped_early
    if stopped:
        tracker.set_tags({"zppo.stopped_early_at": str(state.step)})
    if state.step >= cfg.run.steps or stopped:
        tracker.finish("FINISHED")
    elif trainer.interrupted:  # a signal: checkpointed at this step; `--resume` reopens the MLflow run
        tracker.finish("KILLED")
    elif hasattr(tracker, "flush"):  # stopped before the end (stop_after): what is queued goes now
        tracker.flush(cfg.tracking.flush_timeout_s)
    return RunResult(rd.path, tracker.run_id if d.is_main else rd.mlflow_run_id, state.history, report,
                     time.perf_counter() - t0, trainer.method.summary(), stopped_early=stopped,
                     preempted=trainer.preempted, interrupted=trainer.interrupted)


def _silent(msg: str) -> None:
    pass


def _create(rd: RunDir, cfg: ZPPOConfig, resume: bool) -> None:
    rd.path.mkdir(parents=True, exist_ok=True)
    if not resume:
        rd.write_config(cfg)


def _open_tracker(cfg: ZPPOConfig, rd: RunDir, resume: bool, report: dict[str, Any] | None, log=None):
    """Rank 0: the run's tracker (a new MLflow run, or the run.json's one when resuming); a new run records its
    params, dataset, config and prepare report and its MLflow run id in run.json."""
    from zppo_core.train.record import record_run

    tracker = make_tracker(cfg, rd.path, rd.mlflow_run_id, resume=resume, log=log)
    if not resume:
        record_run(tracker, cfg)  # params that apply to the method, the training data as a dataset input
        tracker.log_artifact(rd.config_path)  # the full resolved config
        if report is not None:
            tracker.log_text(json.dumps(report, indent=2), "prepare/report.json")
            tracker.log_metrics(
                {"prepare/student_accuracy": 100.0 * report["student"]["accuracy"],  # percent, like evals
                 "prepare/student_hard_share": report["student"]["hard_share"],
                 "prepare/teacher_accuracy": 100.0 * report["teacher"]["accuracy"]}, step=0)
        rd.write_meta({"mlflow_run_id": tracker.run_id, "tracking_uri": tracker.uri,
                       "method": cfg.method, "scale": cfg.scale, "seed": cfg.run.seed,
                       "created": time.strftime("%Y-%m-%dT%H:%M:%S")})
    return tracker
