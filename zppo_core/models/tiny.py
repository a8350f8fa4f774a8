"""Tiny models and an offline character tokenizer, built from config (no hub access, ever).

The tokenizer is character-level over printable ASCII plus a few specials, with the method's structural
markers (`<think>`, `</think>`, `\\boxed{`, `<candidate>`, `</candidate>`) as single tokens so responses and
candidate prompts stay short. It round-trips through `save_pretrained` / `AutoTokenizer.from_pretrained`.
"""

from __future__ import annotations

import string
from pathlib import Path

from zppo_core.config.schema import TinyModelSpec

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
USER, ASSISTANT = "<|user|>", "<|assistant|>"
SPECIALS = [PAD, UNK, BOS, EOS, USER, ASSISTANT]
# multi-character markers that get one token each (added tokens are matched before the char split)
MARKERS = ["<think>", "</think>", "\\boxed{", "<candidate>", "</candidate>"]
CHARS = [c for c in string.printable if c not in "\x0b\x0c\r"]  # printable ASCII incl. space, \t, \n

CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'user' %}<|user|>{{ m['content'] }}{% else %}<|assistant|>{{ m['content'] }}<eos>{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def build_char_tokenizer():
    """A PreTrainedTokenizerFast over SPECIALS + MARKERS + printable chars; left padding for batched sampling."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab: dict[str, int] = {}
    for tok in SPECIALS + MARKERS + CHARS:
        vocab.setdefault(tok, len(vocab))
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    core.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token=PAD,
        unk_token=UNK,
        bos_token=BOS,
        eos_token=EOS,
        additional_special_tokens=[USER, ASSISTANT],
        padding_side="left",
    )
    tok.add_tokens(MARKERS)  # non-special: they decode as text
    tok.chat_template = CHAT_TEMPLATE
    return tok


def build_tiny_model(spec: TinyModelSpec, tokenizer, seed: int):
    """A randomly initialised Qwen3 causal LM sized by `spec`, seeded, with the tokenizer's special ids."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_key_value_heads,
        head_dim=spec.head_dim,
        max_position_embeddings=spec.max_position_embeddings,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen3ForCausalLM(config)
    set_generation_ids(model, tokenizer)
    return model


def qwen35_text_config(vocab_size: int, *, hidden_size: int = 64, intermediate_size: int = 128,
                       num_hidden_layers: int = 4, full_attention_interval: int = 4, num_attention_heads: int = 4,
                       num_key_value_heads: int = 2, head_dim: int = 16, linear_num_key_heads: int = 2,
                       linear_num_value_heads: int = 2, linear_key_head_dim: int = 16, linear_value_head_dim: int = 16,
                       tie_word_embeddings: bool = True, **ids):
    """A Qwen3.5 text config (hybrid: every `full_attention_interval`-th layer full attention, the others Gated
    DeltaNet linear attention), sized by the arguments. Small defaults build a tiny test model; the GPU benchmark
    passes a 0.8B shape. The rotary sections are sized to the head (a quarter of head_dim is rotated, as in
    Qwen3.5; text-only positions use the first section). `ids`: pad/bos/eos token ids."""
    from transformers import Qwen3_5TextConfig

    pairs = max(2, int(head_dim * 0.25)) // 2  # rotated (cos, sin) pairs per head
    section = [pairs // 3 + (i < pairs % 3) for i in range(3)]  # temporal/height/width; head_dim 256: [11, 11, 10]
    layer_types = ["full_attention" if (i + 1) % full_attention_interval == 0 else "linear_attention"
                   for i in range(num_hidden_layers)]
    return Qwen3_5TextConfig(
        vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=intermediate_size,
        num_hidden_layers=num_hidden_layers, layer_types=layer_types, num_attention_heads=num_attention_heads,
        num_key_value_heads=num_key_value_heads, head_dim=head_dim, linear_num_key_heads=linear_num_key_heads,
        linear_num_value_heads=linear_num_value_heads, linear_key_head_dim=linear_key_head_dim,
        linear_value_head_dim=linear_value_head_dim, tie_word_embeddings=tie_word_embeddings,
        rope_parameters={"rope_type": "default", "rope_theta": 10_000_000.0, "partial_rotary_factor": 0.25,
                         "mrope_section": section, "mrope_interleaved": True},
        **ids,
    )


def set_generation_ids(model, tokenizer) -> None:
    gc = model.generation_config
    gc.pad_token_id = tokenizer.pad_token_id
    gc.eos_token_id = tokenizer.eos_token_id
    gc.bos_token_id = tokenizer.bos_token_id


def save_model(model, tokenizer, path: str | Path) -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
