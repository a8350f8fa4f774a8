"""The typed configuration of a zppo run: the single source of truth.

Every field carries help text (shown by `zppo train --dry-run` and `zppo ls`). Presets in
`zppo_core/config/presets/*.yaml` are partial dicts validated against this schema; `--set a.b=v` overrides are
applied on top. Cross-field rules live in `ZPPOConfig._check`, and each message names the fix.

No torch import here: the CLI validates configs before any heavy import.

Why this file is long: it is the whole schema, one small class per section with every field's help text, and
the cross-field rules must see all sections at once; splitting it would scatter the single source of truth.
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, model_validator

# The shared closer of the GPU presets (ZPPO.md §3: reason inside <think> </think>, then the answer in \\boxed{}).
# The paper's own wording is not in ZPPO.md and could not be read here; this is the three-sentence closer of the
# EasyR1 / verl recipes the paper's RL backbone follows (verl examples/data_preprocess/geo3k.py,
# `instruction_following`, appended after one space), which says exactly what ZPPO.md §3 describes.
PAPER_CLOSER = (
    " You FIRST think about the reasoning process as an internal monologue and then provide the final answer. "
    "The reasoning process MUST BE enclosed within <think> </think> tags. The final answer MUST BE put in \\boxed{}."
)


def pure_bf16_reason(lr: float) -> str:
    """One line: why bf16 master weights are refused for training, and the fix (zppo_core.models.precision)."""
    return (
        f"pure bfloat16 training (model.master_dtype=bfloat16) is refused: AdamW steps of ~lr={lr:g} fall below "
        f"half a bf16 spacing for every weight with |w| >= {256 * lr:.2g}, so most updates round away (measured: "
        "2% of σ=0.02 weights move in 10 steps at lr 1e-6); set model.master_dtype=float32 (model.dtype=bfloat16 then means bf16 compute "
        "with fp32 master weights and fp32 AdamW state)"
    )


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TinyModelSpec(_Section):
    """Architecture of a tiny Qwen3 model built from config (no hub download)."""

    hidden_size: int = Field(128, gt=0, description="Width of the residual stream.")
    intermediate_size: int = Field(512, gt=0, description="MLP hidden width.")
    num_hidden_layers: int = Field(4, gt=0, description="Transformer blocks.")
    num_attention_heads: int = Field(4, gt=0, description="Query heads.")
    num_key_value_heads: int = Field(2, gt=0, description="Key/value heads (GQA).")
    head_dim: int = Field(32, gt=0, description="Per-head width.")
    max_position_embeddings: int = Field(512, gt=0, description="Longest sequence the model is built for.")

    @model_validator(mode="after")
    def _heads(self) -> "TinyModelSpec":
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_attention_heads={self.num_attention_heads} must be a multiple of "
                f"num_key_value_heads={self.num_key_value_heads}; set num_key_value_heads to a divisor"
            )
        return self


class EndpointConfig(_Section):
    """A model served behind an OpenAI-compatible API (`vllm serve` / `zppo serve teacher`), used through
    `rollout/openai_engine.py` instead of loading the model in-process. `url: null` = in-process."""

    url: str | None = Field(
        None,
        description="OpenAI-compatible endpoint, e.g. http://teacher-node:8000/v1 (null: load the model in-process).",
    )
    model: str | None = Field(
        None,
        description="Served model name (vllm serve --served-model-name). null: model.teacher for the teacher "
        "(what `zppo serve teacher` serves it as); for a judge, the endpoint's only model.",
    )
    api_key_env: str | None = Field(
        None, description="Name of the environment variable holding the API key (the key is never logged or saved)."
    )
    timeout_s: float = Field(
        1800.0,
        gt=0,
        description="Seconds one request may take before it is retried (a 12k-token teacher rollout in a full batch "
        "can take many minutes).",
    )
    max_retries: int = Field(
        3, ge=0, description="Extra attempts (exponential backoff) after connection errors, timeouts, HTTP 429/5xx."
    )
    concurrency: int = Field(
        64, gt=0, description="Requests in flight at once (the server batches them; each asks for n samples)."
    )
    chat_template_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="Keyword arguments for the served model's chat template (vLLM), e.g. {enable_thinking: true}.",
    )

    @model_validator(mode="after")
    def _url(self) -> "EndpointConfig":
        if self.url is not None:
            parsed = urlparse(self.url)
            if parsed.scheme not in ("http", "https") or not parsed.netloc:
                raise ValueError(
                    f"url={self.url!r} is not an http(s) URL; write it like http://host:8000/v1 (or null for an "
                    "in-process model)"
                )
        if self.api_key_env is not None and not self.api_key_env.replace("_", "").isalnum():
            raise ValueError("api_key_env must be the *name* of an environment variable (letters, digits, _; e.g. "
                             "TEACHER_API_KEY), never the key itself")
        return self


class TinyVisionSpec(_Section):
    """Vision tower and image processor of the tiny Qwen3.5 vision-language pair (`tiny-vl`), built from config.

    A 16-pixel cell of the synthetic images is 2×2 patches of `patch_size` 8, merged into one image token."""

    depth: int = Field(1, gt=0, description="Vision transformer blocks.")
    hidden_size: int = Field(64, gt=0, description="Vision tower width.")
    intermediate_size: int = Field(128, gt=0, description="Vision MLP hidden width.")
    num_heads: int = Field(2, gt=0, description="Vision attention heads.")
    patch_size: int = Field(8, gt=0, description="Pixels per patch side (the image processor uses the same).")
    spatial_merge_size: int = Field(2, gt=0, description="Patches merged per token side (2: 2x2 patches, one token).")
    num_position_embeddings: int = Field(
        144, gt=0, description="Learned vision position embeddings (a perfect square; interpolated to each grid)."
    )

    @model_validator(mode="after")
    def _square(self) -> "TinyVisionSpec":
        root = round(self.num_position_embeddings**0.5)
        if root * root != self.num_position_embeddings:
            raise ValueError(f"num_position_embeddings={self.num_position_embeddings} must be a perfect square "
                             f"(e.g. {root * root} or {(root + 1) ** 2})")
        return self


class ChatTemplateKwargs(_Section):
    """Keyword arguments passed to the chat template (`apply_chat_template(..., **kwargs)`) per role, e.g.
    `enable_thinking: false` for a Qwen3-family model that otherwise opens in thinking mode."""

    student: dict[str, Any] = Field(default_factory=dict, description="Student prompts (plain, BCQ, NCQ, eval).")
    teacher: dict[str, Any] = Field(default_factory=dict, description="Teacher rollouts on hard questions (BCQ).")
    compression: dict[str, Any] = Field(
        default_factory=dict, description="The teacher's candidate-compression calls (need <summary> in the reply)."
    )
    judge: dict[str, Any] = Field(default_factory=dict, description="The judge (training reward and evaluation).")


class ModelConfig(_Section):
    student: str = Field(
        "tiny",
        description="Student model: 'tiny' (a text Qwen3 built from model.tiny_student and prepared by SFT), "
        "'tiny-vl' (a Qwen3.5 vision-language model: model.tiny_student + model.tiny_vision), a local HF model "
        "directory, or a hub id already in the local HF cache (nothing is downloaded at run time).",
    )
    teacher: str = Field(
        "tiny",
        description="Frozen teacher (prompt-side only, never in the gradient): 'tiny' / 'tiny-vl' (as the student), "
        "a local directory or a cached hub id. With teacher_endpoint.url set, the model that endpoint serves (zppo "
        "serve teacher serves this).",
    )
    teacher_endpoint: EndpointConfig = Field(
        default_factory=EndpointConfig,
        description="Use a served teacher (OpenAI-compatible API, e.g. on GPUs of its own) instead of loading "
        "model.teacher in-process: set teacher_endpoint.url.",
    )
    tiny_student: TinyModelSpec = Field(
        default_factory=lambda: TinyModelSpec(num_hidden_layers=2), description="Tiny student architecture (0.5M)."
    )
    tiny_teacher: TinyModelSpec = Field(
        default_factory=lambda: TinyModelSpec(num_hidden_layers=4),
        description="Tiny teacher architecture (larger than the student: 1.0M).",
    )
    tiny_vision: TinyVisionSpec = Field(
        default_factory=TinyVisionSpec, description="tiny-vl: vision tower of the student and the teacher."
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Where the student trains and samples: auto picks cuda when available, else cpu."
    )
    dtype: Literal["float32", "bfloat16"] = Field(
        "float32",
        description="Compute dtype: the training forward/backward (bf16 autocast over the fp32 masters), rollouts, "
        "and the frozen teacher/judge weights. fp32 on CPU (bf16 is slower there); bf16 on GPU as in the paper.",
    )
    master_dtype: Literal["float32", "bfloat16"] = Field(
        "float32",
        description="Dtype of the trained weights, their gradients and the AdamW state (checkpoints keep it). Must "
        "be float32: pure bf16 training rounds AdamW steps of ~lr away and is refused.",
    )
    chat_template_kwargs: ChatTemplateKwargs = Field(
        default_factory=lambda: ChatTemplateKwargs(),
        description="Extra keywords for apply_chat_template per role (e.g. enable_thinking: false).",
    )
    requires_cuda: bool = Field(False, description="The preset only makes sense on GPUs (the paper's scales).")


class PrepareConfig(_Section):
    """SFT that gives the tiny student and teacher their starting skills (tiny scale only).

    Both models first learn the one-step skill (level 1 only, `*_warm_steps`), then the whole level mixture
    (`*_steps`). The student's mixture targets are a *noisy* version of the correct responses: at level L a
    share `student_noise[L]` of its targets is a plausible wrong solution (one slipped step). SFT converges to
    that distribution, so after `prepare` the student samples slips at a level-dependent rate — it solves easy
    questions, many long ones are hard — robustly across seeds and step counts. The teacher learns clean data.
    """

    student_warm_steps: int = Field(250, ge=0, description="Student SFT steps on level-1 items only (the skill).")
    student_steps: int = Field(200, ge=0, description="Student SFT steps on the noisy level mixture.")
    teacher_warm_steps: int = Field(250, ge=0, description="Teacher SFT steps on level-1 items only.")
    teacher_steps: int = Field(200, ge=0, description="Teacher SFT steps on the clean level mixture.")
    batch_size: int = Field(64, gt=0, description="SFT sequences per step.")
    lr: float = Field(2e-3, gt=0, description="SFT peak learning rate (linear warmup, then cosine decay per phase).")
    warmup_steps: int = Field(30, ge=0, description="SFT linear warmup steps (first phase).")
    student_levels: dict[int, float] | None = Field(
        None, description="Level weights of the student's mixture phase (None: uniform over each family's levels)."
    )
    student_noise: dict[int, float] = Field(
        default_factory=lambda: {1: 0.0, 2: 0.05, 3: 0.1, 4: 0.15, 5: 0.2},
        description="Per level, the share of the student's plain SFT targets that are plausible wrong solutions "
        "(random slips: easy for plain RL to remove).",
    )
    misconceptions: int = Field(
        20,
        ge=0,
        le=100,
        description="Families that support it (modsum): digit pairs the student consistently gets wrong in its "
        "SFT targets; questions meeting one are hard and stay hard under plain sampling (the zone ZPPO targets).",
    )
    misconception_rate: float = Field(
        0.95, ge=0, le=1, description="How often a misconception is written instead of the right result."
    )
    teacher_levels: dict[int, float] | None = Field(
        None, description="Level weights of the teacher's mixture phase (None: uniform)."
    )
    candidate_prompt_share: float = Field(
        0.25,
        ge=0,
        le=1,
        description="Share of the student's mixture items shown as BCQ/NCQ-style prompts (it learns the format; "
        "a pretrained student already follows such instructions).",
    )
    candidate_noise_scale: float = Field(
        0.5, ge=0, le=1, description="Noise of candidate-prompt targets = this × student_noise[level]."
    )
    vision_lr_scale: float = Field(
        0.03,
        ge=0,
        description="tiny-vl: SFT learning rate of the vision tower relative to the text model's (at the full rate "
        "Adam's noisy updates inflate the random tower's outputs 20-50x within 50 steps, the text model's "
        "normalisation then scales their gradient away, and reading never starts).",
    )
    sft_attention: Literal["sdpa", "eager"] = Field(
        "sdpa",
        description="Attention kernel of the text tiny pair's SFT steps (sampling always uses sdpa; tiny-vl ignores "
        "it). 'eager' (matmul + softmax) trains ~1.5-2x faster than sdpa's CPU kernel, whose backward with the "
        "packed rows' mask is slow in bf16; the weights differ in the last bits. 'sdpa' keeps caches prepared "
        "before this field existed valid (it then leaves the cache key unchanged).",
    )
    cache_dir: str = Field(
        "~/.cache/zppo/prepared",
        description="Prepared checkpoints are cached here, keyed by a hash of everything that shapes them.",
    )


class DataConfig(_Section):
    families: list[str] = Field(
        default_factory=lambda: ["modsum"], description="Training task families (tiny scale; see `zppo ls families`)."
    )
    levels: dict[int, float] | None = Field(
        None, description="Difficulty-level weights of training questions (None: uniform over each family's levels)."
    )
    ood_families: list[str] = Field(
        default_factory=lambda: ["sub", "linear_neg", "chain4"],
        description="Held-out families, never trained on (out-of-distribution evaluation).",
    )
    path: str | None = Field(
        None,
        description="GPU scales: local dataset (jsonl with question/answer fields, optional image/images paths) "
        "instead of synthetic families.",
    )
    image_dir: str | None = Field(
        None,
        description="Folder that relative image paths of data.path are looked up in after the data file's own "
        "folder (e.g. a shared datasets/ folder).",
    )
    min_pixels: int = Field(
        256 * 32 * 32, gt=0, description="Images are resized (aspect kept) to at least this many pixels (paper)."
    )
    max_pixels: int = Field(
        1280 * 32 * 32, gt=0, description="Images are resized (aspect kept) to at most this many pixels (paper)."
    )
    closer: str = Field(
        PAPER_CLOSER,
        description="Shared closer appended to every training and evaluation prompt (plain, BCQ, NCQ). Default: the "
        "three-sentence think/boxed closer (see PAPER_CLOSER); the tiny preset uses a short one.",
    )
    max_prompt_tokens: int | None = Field(
        None,
        gt=0,
        description="Skip training questions whose plain prompt (chat template + closer) is longer than this many "
        "tokens (paper: 4,096); counted as data/filtered_questions. None: no filter.",
    )


class RolloutConfig(_Section):
    engine: Literal["transformers", "vllm"] = Field(
        "transformers", description="Sampling engine: transformers (CPU/GPU) or vllm (GPU, optional extra)."
    )
    group_size: int = Field(8, ge=2, description="G_S: student rollouts per prompt.")
    max_new_tokens: int = Field(48, gt=0, description="Longest response (the paper: 12,288).")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature for training rollouts (paper: 1.0).")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling for training rollouts (paper: 1.0).")
    batch_size: int = Field(
        256, gt=0, description="Most sequences generated in one batched call (memory knob, no effect on results)."
    )


class AlgoConfig(_Section):
    n_new: int = Field(16, gt=0, description="New questions per rollout step (paper: 384).")
    updates_per_step: int = Field(4, gt=0, description="I: optimizer steps (mini-batches) per rollout step (paper: 4).")
    micro_batch_size: int = Field(
        64, gt=0, description="Sequences per forward/backward; mini-batches are gradient-accumulated (memory knob)."
    )
    micro_batch_tokens: int = Field(
        8192, gt=0, description="Most padded tokens per forward/backward (memory knob; length-bucketed micro-batches; "
        "a prompt shared by several rows counts once where the forward runs it once)."
    )
    adv_norm: Literal["nontrivial", "none", "all"] = Field(
        "nontrivial",
        description="Advantage step 2: normalise over non-trivial groups (paper), 'none' (A=r-mean only) or "
        "'all' (norm with zero groups).",
    )
    adv_eps: float = Field(1e-6, gt=0, description="ε in (A'-μ)/(σ+ε).")
    eps_low: float = Field(0.20, ge=0, lt=1, description="PPO lower clip ε_low.")
    eps_high: float = Field(0.28, ge=0, description="PPO upper clip ε_high (clip-higher).")
    dual_clip: float | None = Field(10.0, description="Dual-clip constant c on negative advantages (None: off).")
    old_logprobs: Literal["engine", "trainer"] = Field(
        "engine",
        description="Where PPO's π_old comes from: 'trainer' recomputes it with a no-grad forward of the trained "
        "model before the first update (GPU presets: engine and trainer numerics differ); 'engine' uses the "
        "rollout engine's log-probs (tiny: the transformers engine shares the model, the two agree).",
    )
    tis_cap: float | None = Field(
        None,
        gt=0,
        description="Truncated importance sampling for the engine/trainer mismatch (needs old_logprobs=trainer): "
        "each token's loss is weighted by min(π_old/π_engine, tis_cap) (TRL token_truncate, verl rollout_is=token; "
        "typical 2-3). None: off.",
    )

    @model_validator(mode="after")
    def _dual(self) -> "AlgoConfig":
        if self.dual_clip is not None and self.dual_clip <= 1.0:
            raise ValueError(f"dual_clip={self.dual_clip} must be > 1 (paper: 10) or null to disable it")
        if self.tis_cap is not None and self.old_logprobs != "trainer":
            raise ValueError(
                f"tis_cap={self.tis_cap} corrects engine log-probs against the trainer's π_old, but "
                "old_logprobs=engine uses the engine's as π_old; set algo.old_logprobs=trainer or algo.tis_cap=null"
            )
        return self


class RewardConfig(_Section):
    """The training reward (ZPPO.md §2): the rule grader, and the LLM judge for what the rule grader cannot decide."""

    judge: str = Field(
        "none",
        description="Judge of training rollouts the rule grader cannot decide (no \\boxed{} answer parses, or the "
        "question's answer_type is free_form): 'none' (rule grader only), 'teacher' (the teacher at temperature 0, "
        "as the paper), or a local model directory. Strict JSON verdict, as `zppo eval`; malformed = wrong.",
    )
    judge_max_new_tokens: int = Field(256, gt=0, description="The judge's reply budget per verdict.")


class ZPPOSection(_Section):
    """ZPPO's own knobs (ZPPO.md §1, §3, §4); used by zppo and the GRPO†/BCQ/NCQ variants."""

    tau: float = Field(
        0.5, gt=0, le=1, description="τ: a question is hard when its plain mean accuracy < τ; it graduates at ≥ τ."
    )
    rho_replay: float = Field(0.25, ge=0, description="ρ_replay: replayed questions per step = ρ_replay·n_new.")
    rho_aug: float = Field(0.25, ge=0, description="ρ_aug: cap on BCQ+NCQ instances per step = ρ_aug·n_new (joint).")
    capacity: int = Field(10_000, ge=0, description="|B|max: replay buffer capacity (FIFO eviction beyond it).")
    teacher_group_size: int = Field(4, gt=0, description="G_T: teacher rollouts per hard question.")
    compression: Literal["teacher", "none"] = Field(
        "teacher",
        description="Candidate compression: 'teacher' rewrites each candidate into <= 5 lines / 512 tokens "
        "(GPU scales); 'none' truncates raw text to candidate_max_chars (tiny).",
    )
    candidate_max_chars: int = Field(2048, gt=0, description="Cap on a candidate's characters (mode 'none').")
    compression_max_tokens: int = Field(512, gt=0, description="Token budget of a compressed candidate.")
    template: str = Field(
        "full",
        description="BCQ/NCQ/hint wording: 'compact', 'full', or a YAML file of Jinja templates (keys bcq/ncq/hint).",
    )
    samples_to_log: int = Field(6, ge=0, description="BCQ and NCQ prompts (with rollouts) saved as artifacts.")


class BaselinesConfig(_Section):
    """Knobs of the paper's baselines (ZPPO.md §5): Hint, Prefix and the distillation losses."""

    prefix_fraction: float = Field(
        0.4, gt=0, lt=1, description="Prefix: share of a correct teacher response's tokens forced as the response's "
        "start (paper: the first 40 %); the prefix is masked from the loss.",
    )
    hint_fraction: float = Field(
        0.5, gt=0, le=1, description="Hint with zppo.compression=none (tiny): the hint is this leading share of a "
        "correct teacher response's reasoning, never its final answer or box. With compression=teacher the teacher "
        "writes the hint.",
    )
    hint_max_tokens: int = Field(128, gt=0, description="Hint with compression=teacher: the teacher's token budget.")
    jsd_beta: float = Field(
        0.5, ge=0, le=1, description="Distillation: generalized JSD mixture weight β (0.5: symmetric JSD; 0: forward "
        "KL(teacher||student); 1: reverse KL), as TRL's GKD.",
    )


class OptimConfig(_Section):
    lr: float = Field(1e-6, gt=0, description="AdamW learning rate, constant, no warmup (paper: 1e-6).")
    betas: tuple[float, float] = Field((0.9, 0.999), description="AdamW betas.")
    eps: float = Field(1e-8, gt=0, description="AdamW epsilon.")
    weight_decay: float = Field(0.1, ge=0, description="AdamW decoupled weight decay.")
    grad_clip: float = Field(1.0, gt=0, description="Global grad-norm clip per optimizer step.")


class RunConfig(_Section):
    seed: int = Field(0, description="Seed for data order, sampling and mini-batch shuffling.")
    steps: int = Field(150, gt=0, description="Rollout steps (paper: 200, one pass over the data).")
    run_dir: str | None = Field(
        None, description="Run directory (default: runs/<method>-<scale>-s<seed>-<timestamp>, the MLflow run name too)."
    )
    checkpoint_every: int = Field(25, gt=0, description="Write a checkpoint every N steps (and at the end).")
    checkpoint_minutes: float | None = Field(
        None,
        gt=0,
        description="Also write a checkpoint when this many wall-clock minutes passed since the last one (for "
        "Slurm time limits and preemption; None: step schedule only).",
    )
    keep_checkpoints: int = Field(2, gt=0, description="How many step checkpoints to keep.")
    threads: int | None = Field(None, description="torch CPU threads (None: torch's default).")
    final_eval_per_level: int = Field(
        0,
        ge=0,
        description="Tiny scale: held-out questions per family and level evaluated at the end of the run "
        "(eval/heldout/*; 0 = off).",
    )


class EvalConfig(_Section):
    """Benchmark evaluation: `zppo eval` and periodic evaluation during training (metrics eval/<suite>/*)."""

    every: int = Field(
        0, ge=0, description="Evaluate the suites every N training steps (0: never during training)."
    )
    suites: list[str] = Field(
        default_factory=list,
        description="Suites evaluated during training: tiny, tiny-ood (offline, synthetic), or a paper suite "
        "(vlm, llm, video, all) / comma-separated benchmark names read from eval.data_dir.",
    )
    per_level: int = Field(8, gt=0, description="Tiny suites: held-out questions per family and level.")
    limit: int | None = Field(None, gt=0, description="Paper suites: at most N items per benchmark (quick looks).")
    data_dir: str | None = Field(
        None, description="Directory holding the benchmarks' local data (default: $ZPPO_DATA_DIR)."
    )
    mmlu_redux_subset: Literal["ok", "all"] = Field(
        "ok", description="MMLU-Redux rows to grade: 'ok' = those annotated correct (as lm-evaluation-harness, "
        "fxmarty/mmlu-redux-2.0-ok); 'all' = every row against its original label."
    )
    samples: int = Field(1, gt=0, description="Samples per item: pass@1 is estimated as mean@k (paper: 1).")
    video_frames: int = Field(
        8, gt=0, description="Video benchmarks: frames sampled uniformly per clip, given to the model as images."
    )
    temperature: float = Field(0.6, ge=0, description="Evaluation sampling temperature (paper: 0.6).")
    top_p: float = Field(0.95, gt=0, le=1, description="Evaluation nucleus sampling (paper: 0.95).")
    top_k: int = Field(20, ge=0, description="Evaluation top-k (paper: 20; 0 = off).")
    presence_penalty: float = Field(1.5, description="Evaluation presence penalty (paper: 1.5; vLLM only).")
    max_new_tokens: int = Field(12288, gt=0, description="Evaluation response budget (paper: 12,288).")
    judge_endpoint: EndpointConfig = Field(
        default_factory=EndpointConfig,
        description="How to reach a served judge (`zppo eval --judge http://host:port/v1` sets url): served model "
        "name, API key variable, timeouts.",
    )


class TrackingConfig(_Section):
    uri: str | None = Field(
        None,
        description="MLflow tracking URI. None: $MLFLOW_TRACKING_URI if set, else an embedded sqlite store "
        "at ./mlruns/mlflow.db (no server needed).",
    )
    experiment: str = Field("zppo", description="MLflow experiment name.")
    enabled: bool = Field(True, description="Log to MLflow (false: nothing is sent; the run dir keeps the records, "
                          "and `zppo sync RUN_DIR --uri URI` sends them later).")
    connect_timeout_s: float = Field(
        10.0, gt=0, description="A new run checks that a tracking server answers within this many seconds (one "
        "request) and stops with exit code 2 before anything is created when it does not.")
    flush_timeout_s: float = Field(
        60.0, ge=0, description="At the end of a run, how long to wait for records a tracking server has not yet "
        "received (an outage; training never waits for it); what is left stays in the run dir for `zppo sync`.")
    parent_run_id: str | None = Field(
        None, description="Nest this run's MLflow run under this parent run (sweeps set it for every trial)."
    )
    tags: dict[str, str] = Field(default_factory=dict, description="Extra MLflow tags for the run.")
    run_name: str | None = Field(
        None, description="MLflow run name (None: <method>-<scale>-s<seed>-<time>; sweep trials add their values)."
    )
    description: str | None = Field(
        None, description="The run's MLflow description (None: the command line that started it; `zppo train` "
        "records its own command line here so a Slurm job shows it too)."
    )


class ZPPOConfig(_Section):
    """A whole run. Sections mirror the YAML presets."""

    scale: str = Field("tiny", description="Preset this config came from.")
    method: str = Field("grpo", description="Training method (see `zppo ls`).")
    run: RunConfig = Field(default_factory=RunConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    prepare: PrepareConfig = Field(default_factory=PrepareConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    algo: AlgoConfig = Field(default_factory=AlgoConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    zppo: ZPPOSection = Field(default_factory=ZPPOSection)
    reward: RewardConfig = Field(default_factory=RewardConfig)
    baselines: BaselinesConfig = Field(default_factory=BaselinesConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)

    @model_validator(mode="after")
    def _check(self) -> "ZPPOConfig":
        rollouts = self.algo.n_new * self.rollout.group_size
        if rollouts % self.algo.updates_per_step:
            raise ValueError(
                f"algo.n_new*rollout.group_size = {rollouts} rollouts cannot be split into "
                f"algo.updates_per_step={self.algo.updates_per_step} equal mini-batches; "
                "choose n_new or group_size so the product is divisible"
            )
        if self.algo.eps_high < self.algo.eps_low:
            raise ValueError(
                f"algo.eps_high={self.algo.eps_high} < algo.eps_low={self.algo.eps_low}: clip-higher needs "
                "eps_high >= eps_low"
            )
        served_teacher = self.model.teacher_endpoint.url is not None
        tiny = ("tiny", "tiny-vl")
        if not served_teacher and (self.model.student in tiny or self.model.teacher in tiny) and \
                self.model.student != self.model.teacher:
            raise ValueError(
                "model.student and model.teacher must both be 'tiny', both 'tiny-vl', or both real models (a tiny "
                "pair shares a character tokenizer); set both"
            )
        if self.data.min_pixels > self.data.max_pixels:
            raise ValueError(f"data.min_pixels={self.data.min_pixels} > data.max_pixels={self.data.max_pixels}; "
                             "set min_pixels <= max_pixels")
        if self.model.master_dtype != "float32":
            raise ValueError(pure_bf16_reason(self.optim.lr))
        return self
