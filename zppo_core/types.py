"""Plain data types shared by every layer of zppo_core.

Nothing here imports torch: token ids and log-probabilities are plain lists so that the pure algorithm
pieces (buffer, prompt builders) and the CLI can use these types without the heavy imports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Question:
    """One verifiable training or evaluation item.

    `prompt` is the bare question text (no closer, no chat template); `answer` is the gold final answer as
    it would appear inside ``\\boxed{}``; `family`/`level` say which generator made it and how hard it is
    meant to be. `images` are the question's images, in the order the prompt shows them (before its text): each a
    local file path or a ``data:`` URI holding the encoded image (plain strings, so a question stays JSON-able
    for checkpoints), or a decoded PIL image for programmatic use; they are decoded and fitted into the pixel
    bounds when a prompt is rendered (`zppo_core.tasks.images`).
    """

    id: str
    prompt: str
    answer: str
    family: str = ""
    level: int = 0
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    images: tuple[Any, ...] = field(default=(), compare=False, hash=False)


@dataclass
class Prompt:
    """One rendered prompt, what every engine and the training forward take.

    `ids`: prompt token ids through the model's chat template (image placeholders already expanded to one token per
    image feature). `mm`: the processor's other outputs for this prompt alone (e.g. `pixel_values` [N, D],
    `image_grid_thw` [I, 3], `mm_token_type_ids` [P]) or None for a text prompt. `messages` / `images`: the same
    prompt as a conversation in the Hugging Face multimodal content format plus its decoded images, for engines
    that render prompts themselves (vLLM's image path, a served model).
    """

    ids: list[int]
    mm: dict[str, Any] | None = None
    messages: list[dict[str, Any]] | None = None
    images: tuple[Any, ...] = ()


@dataclass
class Completion:
    """What a rollout engine returns for one sample: new token ids and their sampling log-probs."""

    token_ids: list[int]
    logprobs: list[float]
    text: str
    finished: bool  # True when the sample ended with EOS, False when cut at max_new_tokens


@dataclass
class Rollout:
    """One scored completion inside a group."""

    question_id: str
    group_id: int
    kind: str  # "plain", "bcq", "ncq", ... : the prompt variant that produced it
    prompt_ids: list[int]
    completion: Completion
    reward: float
    extracted: str | None  # the final answer parsed from the completion (None: no parseable answer)
    prompt_mm: dict[str, Any] | None = None  # the prompt's image inputs (processor tensors), shared by its group
    judged: bool = False  # the reward came from the LLM judge (the rule grader could not decide)


@dataclass
class Group:
    """All rollouts of one prompt. Advantages are normalised within a group; kinds never share a group."""

    id: int
    kind: str
    question: Question
    prompt_text: str
    rollouts: list[Rollout] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)  # e.g. BCQ/NCQ candidates' answers

    @property
    def rewards(self) -> list[float]:
        return [r.reward for r in self.rollouts]

    @property
    def mean_reward(self) -> float:
        return sum(self.rewards) / max(len(self.rollouts), 1)
