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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol, runtime_checkable

from zppo_core.types import Completion


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
