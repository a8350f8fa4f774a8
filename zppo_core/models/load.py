"""Where a model comes from and how it is loaded: the one place train, prepare and eval get their models.

- `resolve_model(ref, field)`: `tiny` (the prepared pair, see `train/prepare.py`), a local Hugging Face model
  directory, or a hub id already in the local HF cache; anything else is a `ConfigError` naming the fix (nothing
  is ever downloaded).
- `device(cfg)`, `torch_dtype(cfg)`: `model.device` (auto -> cuda when available) and `model.dtype` (the compute
  dtype; `zppo_core.models.precision` says what trains in which dtype).
- `load_model(path, cfg, trainable=...)`: a causal LM with its tokenizer, or — when the directory's config has a
  `vision_config` (Qwen3.5 checkpoints, a tiny-vl pair) — an image-text-to-text model with its processor (whose
  tokenizer is used; `models.vl.load_processor`, which works without torchvision for the Qwen-VL family). A frozen
  model (teacher, judge, an evaluated checkpoint) is loaded in the compute dtype, in eval mode with gradients off; a
  trainable one (the student) in the master dtype (fp32: bf16 compute runs under autocast, see `precision.py`)
  and returned as `from_pretrained` gives it. `tokenizer=` shares a tokenizer (the teacher uses the student's).
- `render(tokenizer, text, templater, template_kwargs)` / `PromptRenderer`: the one render path of training,
  prepare and eval. A user message (or a whole conversation) through the model's chat template to prompt token
  ids; for a vision-language model the processor holds the template. `template_kwargs` go to
  `apply_chat_template` (per role: `model.chat_template_kwargs`, `chat_kwargs(cfg, role)`; e.g.
  `enable_thinking=False` for a Qwen3-family teacher's compression calls). `PromptRenderer.prompt(text, images)`
  renders a question with its images (decoded and fitted into the pixel bounds, placeholders before the text,
  once) into a `types.Prompt` through the processor; plain, BCQ and NCQ prompts of an image question all go
  through it.

Engines over a loaded model are built in `zppo_core.rollout.make_engine`.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zppo_core.config import ConfigError
from zppo_core.config.schema import ZPPOConfig
from zppo_core.types import Prompt

TINY = "tiny"
TINY_VL = "tiny-vl"
TINY_MODELS = (TINY, TINY_VL)  # built from config and prepared by SFT (`zppo prepare`), never loaded from a hub


def is_tiny(ref: str) -> bool:
    return ref in TINY_MODELS


def resolve_model(ref: str, field: str) -> str:
    """A local directory, or a hub id present in the local HF cache; else a one-line error. `tiny`/`tiny-vl` pass
    through."""
    if is_tiny(ref):
        return ref
    if Path(ref).expanduser().is_dir():
        if not (Path(ref).expanduser() / "config.json").is_file():
            raise ConfigError(f"{field}: {ref} has no config.json; point it at a Hugging Face model directory")
        return str(Path(ref).expanduser())
    if "/" in ref and not ref.startswith((".", "/", "~")):
        try:
            from huggingface_hub import snapshot_download

            return snapshot_download(ref, local_files_only=True)
        except Exception:
            pass
    raise ConfigError(
        f"{field}: model '{ref}' is neither a local directory nor in the local Hugging Face cache; download it "
        f"on a machine with hub access (huggingface-cli download {ref}) or --set {field}=/path/to/model"
    )


def device(cfg: ZPPOConfig) -> str:
    """Where models train and sample: `model.device`, with auto = cuda when available, else cpu."""
    if cfg.model.device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return cfg.model.device


def torch_dtype(cfg: ZPPOConfig):
    """The compute dtype (`model.dtype`)."""
    import torch

    return torch.bfloat16 if cfg.model.dtype == "bfloat16" else torch.float32


def chat_kwargs(cfg: ZPPOConfig, role: str) -> dict[str, Any]:
    """`model.chat_template_kwargs.<role>` (student | teacher | compression | judge) as a dict."""
    return dict(getattr(cfg.model.chat_template_kwargs, role))


def is_vision_language(path: str) -> bool:
    """Whether a model directory holds a vision-language model (its config has a `vision_config`)."""
    from transformers import AutoConfig

    return getattr(AutoConfig.from_pretrained(path), "vision_config", None) is not None


@dataclass
class LoadedModel:
    """A model with what turns text into its inputs: the tokenizer (left padding, a pad token) and, for a
    vision-language model, the processor (images, chat template)."""

    model: Any
    tokenizer: Any
    processor: Any = None
    path: str = ""

    @property
    def templater(self) -> Any:
        """What holds the chat template: the processor of a vision-language model, else the tokenizer."""
        return self.processor if self.processor is not None else self.tokenizer


def load_tokenizer(path: str):
    """The model directory's tokenizer, padded on the left for batched sampling (pad = eos when it has none)."""
    from transformers import AutoTokenizer

    return _padded(AutoTokenizer.from_pretrained(path))


def _padded(tok):
    tok.padding_side = "left"
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(path: str, cfg: ZPPOConfig, trainable: bool = False, tokenizer: Any = None) -> LoadedModel:
    """A model directory -> LoadedModel on `device(cfg)`: a trainable model in the master dtype, a frozen one in
    the compute dtype (`Precision.load_dtype`; see the module docstring)."""
    from zppo_core.models.precision import Precision

    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    processor = None
    if is_vision_language(path):
        from transformers import AutoModelForImageTextToText

        from zppo_core.models.vl import load_processor

        try:
            processor = load_processor(path, getattr(AutoConfig.from_pretrained(path), "model_type", None))
        except ValueError as err:
            raise ConfigError(str(err)) from None
        tokenizer = _padded(processor.tokenizer)
        model_cls = AutoModelForImageTextToText
    else:
        tokenizer = tokenizer if tokenizer is not None else load_tokenizer(path)
        model_cls = AutoModelForCausalLM
    dtype = Precision.from_config(cfg).load_dtype(trainable)
    model = model_cls.from_pretrained(path, dtype=dtype).to(device(cfg))
    if not trainable:
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
    return LoadedModel(model, tokenizer, processor, str(path))


def model_paths(cfg: ZPPOConfig, prepared: Path | None = None) -> tuple[str, str]:
    """(student, teacher) model directories: the prepared tiny pair in `prepared` (`train.prepare.ensure_prepared`)
    for `tiny` / `tiny-vl`, else `model.student` / `model.teacher` resolved."""
    if is_tiny(cfg.model.student):
        if prepared is None:
            raise ConfigError(f"model.student={cfg.model.student}: the tiny pair must be prepared first "
                              f"(zppo prepare --scale {cfg.model.student})")
        return str(Path(prepared) / "student"), str(Path(prepared) / "teacher")
    return resolve_model(cfg.model.student, "model.student"), resolve_model(cfg.model.teacher, "model.teacher")


def load_pair(cfg: ZPPOConfig, student_path: str, teacher_path: str | None) -> tuple[LoadedModel, LoadedModel | None]:
    """The trainable student and, when a path is given, the frozen teacher sharing the student's tokenizer (the
    pair is one model family; the tiny pair shares one character tokenizer)."""
    student = load_model(student_path, cfg, trainable=True)
    teacher = load_model(teacher_path, cfg, tokenizer=student.tokenizer) if teacher_path else None
    return student, teacher


def render(tokenizer, text: str | list[dict], templater=None, template_kwargs: dict[str, Any] | None = None) -> list[int]:
    """User message (or a whole conversation, a list of {role, content}) -> prompt token ids through the
    model's chat template (generation prompt added). `templater`: what holds the chat template when it is not
    the tokenizer (a vision-language model's processor). `template_kwargs`: extra variables for the template
    (e.g. `enable_thinking=False`)."""
    messages = text if isinstance(text, list) else [{"role": "user", "content": text}]
    chat = (templater or tokenizer).apply_chat_template(messages, add_generation_prompt=True, tokenize=False,
                                                        **(template_kwargs or {}))
    return tokenizer(chat, add_special_tokens=False)["input_ids"]


class PromptRenderer:
    """`render` with a cache (the same prompts come back: replayed questions, eval sets): call it with a user
    message or a conversation. At most `max_cache` prompts are kept; later ones are rendered each time.

    `template_kwargs` are the role's chat-template keywords (`chat_kwargs(cfg, role)`). `prompt(text, images)`
    renders a user message with a question's images (paths, data URIs or PIL images), decoded and fitted into
    [`min_pixels`, `max_pixels`] (the paper's bounds unless the config says otherwise), into a `Prompt` with the
    processor's tensors; the last `max_image_cache` image prompts are cached."""

    def __init__(self, tokenizer, templater=None, max_cache: int = 100_000,
                 template_kwargs: dict[str, Any] | None = None, min_pixels: int | None = None,
                 max_pixels: int | None = None, max_image_cache: int = 512):
        from zppo_core.tasks.images import MAX_PIXELS, MIN_PIXELS

        self.tokenizer, self.templater, self.max_cache = tokenizer, templater, max_cache
        self.template_kwargs = dict(template_kwargs or {})
        self.min_pixels = MIN_PIXELS if min_pixels is None else min_pixels
        self.max_pixels = MAX_PIXELS if max_pixels is None else max_pixels
        self.max_image_cache = max_image_cache
        self._cache: dict[str, list[int]] = {}
        self._image_cache: OrderedDict[tuple, Prompt] = OrderedDict()

    @classmethod
    def of(cls, loaded: LoadedModel, template_kwargs: dict[str, Any] | None = None,
           cfg: ZPPOConfig | None = None) -> "PromptRenderer":
        """The renderer of a loaded model; `cfg` gives the pixel bounds (`data.min_pixels` / `data.max_pixels`)."""
        bounds = {} if cfg is None else {"min_pixels": cfg.data.min_pixels, "max_pixels": cfg.data.max_pixels}
        return cls(loaded.tokenizer, loaded.processor, template_kwargs=template_kwargs, **bounds)

    @property
    def sees_images(self) -> bool:
        return getattr(self.templater, "image_processor", None) is not None

    def prompt(self, text: str, images: tuple | list = ()) -> Prompt:
        """A user message with `images` shown before its text (once) -> Prompt (token ids + image inputs)."""
        from zppo_core.models.vl import render_prompt, user_message

        if not images:
            return Prompt(self(text), None, user_message(text), ())
        key = (text, *images) if all(isinstance(im, str) for im in images) else None  # decoded images: no key
        hit = self._image_cache.get(key) if key is not None else None
        if hit is not None:
            self._image_cache.move_to_end(key)
            return hit
        from zppo_core.tasks.images import load_image

        decoded = [load_image(im, self.min_pixels, self.max_pixels) for im in images]
        out = render_prompt(self.tokenizer, self.templater, user_message(text, len(decoded)), decoded,
                            self.template_kwargs)
        if key is None:
            return out
        self._image_cache[key] = out
        while len(self._image_cache) > self.max_image_cache:
            self._image_cache.popitem(last=False)
        return out

    def __call__(self, text: str | list[dict]) -> list[int]:
        key = text if isinstance(text, str) else json.dumps(text)
        ids = self._cache.get(key)
        if ids is None:
            ids = render(self.tokenizer, text, self.templater, self.template_kwargs)
            if len(self._cache) < self.max_cache:
                self._cache[key] = ids
        return ids
