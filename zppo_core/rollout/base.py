"""The rollout engine protocol: token ids in, completions (token ids + per-token log-probs) out.

The student and the teacher are both engines. Engines know nothing of questions, prompts or rewards.

Engines built for a vision-language model also take images (`ImageEngine`): a request is chat messages in the
Hugging Face multimodal content format plus the PIL images their `{"type": "image"}` parts stand for, in order.
Text-only engines have no `generate_multimodal` (and `supports_images` absent or False).

A served model (the teacher or a judge behind an OpenAI-compatible API, `rollout/openai_engine.py`) renders its own
prompts with its own tokenizer and chat template, so it takes chat messages (`ChatEngine.generate_chat`) instead of
token ids; `generate_messages` sends a conversation to either kind of engine. A caller's chat-template keywords
(`template_kwargs`, the role's `model.chat_template_kwargs`) are in its `render` for an in-process engine and go
with the request to a served one.

`generate_prompts(engine, prompts, params)` is what training, prepare and eval call with rendered prompts
(`types.Prompt`, from `models.load.PromptRenderer.prompt`): text prompts go to `generate` as token ids; image
prompts go to the engine's `generate_rendered` when it has one (the transformers engine: the very ids and pixel
tensors the training forward uses), else to `generate_multimodal` as (messages, images) (vLLM, which renders
them with the same processor). A served engine (a `ChatEngine`) gets `Prompt.messages`, each image placeholder
turned into an OpenAI `image_url` content part holding the image as a PNG data URI (`chat_messages`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol, runtime_checkable

from zppo_core.types import Completion, Prompt


@dataclass(frozen=True)
class SamplingParams:
    """How to sample. `logprobs` returned are those of the *policy* (temperature-1 softmax of the raw logits),
    which is what the PPO ratio needs; they equal the sampling log-probs at temperature 1, top-p 1 (training)."""

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    presence_penalty: float = 0.0
    max_new_tokens: int = 64

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@runtime_checkable
class Engine(Protocol):
    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[list[Completion]]:
        """For each prompt (token ids), `params.n` completions, in order."""
        ...

    def sync_weights(self, model) -> None:
        """Make the engine sample from `model`'s current weights (no-op when it already shares them)."""
        ...


# (messages, images): [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": ...}]}], [PIL.Image]
MultimodalRequest = tuple[list[dict[str, Any]], list[Any]]


@runtime_checkable
class ImageEngine(Engine, Protocol):
    supports_images: bool

    def generate_multimodal(self, requests: list[MultimodalRequest], params: SamplingParams) -> list[list[Completion]]:
        """For each (messages, images) request, `params.n` completions, in order (like `generate`)."""
        ...


# a conversation: [{"role": "user", "content": "..."}, ...]
Conversation = list[dict[str, Any]]


@runtime_checkable
class ChatEngine(Protocol):
    """An engine that renders prompts itself: conversations in, `params.n` completions each out. Its completions
    carry text and `finished`; token ids (when the server returns them) are in the served model's vocabulary, and
    log-probs are empty (a served model is prompt-side only: teacher, judge)."""

    def generate_chat(self, conversations: list[Conversation], params: SamplingParams,
                      template_kwargs: dict[str, Any] | None = None) -> list[list[Completion]]:
        ...


def generate_messages(
    engine, conversations: list[Conversation], params: SamplingParams, render: Callable[[Any], list[int]],
    template_kwargs: dict[str, Any] | None = None,
) -> list[list[Completion]]:
    """`params.n` completions per conversation from any engine: a ChatEngine gets the messages (with
    `template_kwargs`, the caller's chat-template keywords), an in-process engine the token ids
    `render(conversation)` makes (the caller's tokenizer and chat template, the same keywords inside)."""
    if isinstance(engine, ChatEngine):
        if template_kwargs:
            return engine.generate_chat(conversations, params, template_kwargs=template_kwargs)
        return engine.generate_chat(conversations, params)
    return engine.generate([render(c) for c in conversations], params)


def generate_prompts(engine, prompts: list[Prompt], params: SamplingParams,
                     template_kwargs: dict[str, Any] | None = None) -> list[list[Completion]]:
    """`params.n` completions per rendered prompt, in order, from any engine (see the module docstring).
    `template_kwargs` (the role's chat-template keywords, already in the rendered prompts) go with the request to a
    served engine."""
    if isinstance(engine, ChatEngine):  # a served model renders (and decodes the images) itself
        if template_kwargs:
            return engine.generate_chat([chat_messages(p) for p in prompts], params, template_kwargs=template_kwargs)
        return engine.generate_chat([chat_messages(p) for p in prompts], params)
    if not any(p.images for p in prompts):
        return engine.generate([p.ids for p in prompts], params)
    if hasattr(engine, "generate_rendered"):
        return engine.generate_rendered(prompts, params)
    if not getattr(engine, "supports_images", False):
        raise ValueError("image questions need an engine that takes images (a vision-language model loaded with "
                         "its processor); this engine is text-only")
    out: list[list[Completion] | None] = [None] * len(prompts)
    text = [i for i, p in enumerate(prompts) if not p.images]
    image = [i for i, p in enumerate(prompts) if p.images]
    if text:
        for i, c in zip(text, engine.generate([prompts[i].ids for i in text], params)):
            out[i] = c
    reqs = [(prompts[i].messages, list(prompts[i].images)) for i in image]
    for i, c in zip(image, engine.generate_multimodal(reqs, params)):
        out[i] = c
    return out  # type: ignore[return-value]


def chat_messages(prompt: Prompt) -> Conversation:
    """The prompt as an OpenAI chat conversation: its messages, each `{"type": "image"}` placeholder replaced, in
    order, by an `image_url` part with that image as a PNG data URI (what vLLM's OpenAI server reads)."""
    if not prompt.images:
        return prompt.messages or []
    import base64
    import io

    images = iter(prompt.images)
    out: Conversation = []
    for m in prompt.messages or []:
        content = m["content"]
        if isinstance(content, list):
            parts = []
            for part in content:
                if part.get("type") == "image":
                    buf = io.BytesIO()
                    next(images).save(buf, format="PNG")
                    url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
                    parts.append({"type": "image_url", "image_url": {"url": url}})
                else:
                    parts.append(part)
            content = parts
        out.append({**m, "content": content})
    return out
