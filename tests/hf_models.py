"""Tiny random Hugging Face models saved with ``save_pretrained``, and their references.

Offline (``HF_HUB_OFFLINE=1``): nothing is downloaded. Weights are redrawn with a
larger scale than transformers' init (std 0.02 makes attention nearly uniform and
logits nearly tied, which would test little).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import functools  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

VOCAB = 96

# name -> (config, save_pretrained options)
SPECS = {
    "gpt2": (
        lambda: transformers.GPT2Config(
            n_layer=2,
            n_embd=32,
            n_head=4,
            n_positions=64,
            vocab_size=VOCAB,
            bos_token_id=0,
            eos_token_id=VOCAB - 1,
            layer_norm_epsilon=1e-4,
        ),
        {},
    ),
    "gpt2-bf16-sharded": (
        lambda: transformers.GPT2Config(
            n_layer=2,
            n_embd=32,
            n_head=2,
            n_positions=64,
            vocab_size=VOCAB,
            bos_token_id=0,
            eos_token_id=VOCAB - 1,
            n_inner=48,
        ),
        {"dtype": torch.bfloat16, "max_shard_size": "8KB"},
    ),
    "llama-gqa": (  # 8 query heads on 2 kv heads: 4 per group; untied head; rope_theta from config
        lambda: transformers.LlamaConfig(
            num_hidden_layers=2,
            hidden_size=32,
            intermediate_size=48,
            num_attention_heads=8,
            num_key_value_heads=2,
            head_dim=8,
            vocab_size=VOCAB,
            max_position_embeddings=64,
            rope_parameters={"rope_type": "default", "rope_theta": 500.0},
            rms_norm_eps=1e-5,
            bos_token_id=0,
            eos_token_id=VOCAB - 1,
        ),
        {},
    ),
    "llama-tied-bf16-sharded": (  # one kv head for 4 query heads, head tied to the embedding
        lambda: transformers.LlamaConfig(
            num_hidden_layers=2,
            hidden_size=32,
            intermediate_size=64,
            num_attention_heads=4,
            num_key_value_heads=1,
            vocab_size=VOCAB,
            max_position_embeddings=64,
            tie_word_embeddings=True,
            bos_token_id=0,
            eos_token_id=VOCAB - 1,
        ),
        {"dtype": torch.bfloat16, "max_shard_size": "8KB"},
    ),
}

# The families beyond GPT-2 and Llama, each at its own odd shapes and with windows short
# enough that prompts and 16 decoding steps run past them. Rope bases differ from the
# defaults; the soft-caps are small so that they bend the numbers.
_SMALL = dict(vocab_size=VOCAB, bos_token_id=0, eos_token_id=VOCAB - 1, rms_norm_eps=1e-5)
FAMILY_SPECS = {
    "mistral": (  # every layer slides (window 5); head_dim apart from hidden / heads
        lambda: transformers.MistralConfig(
            num_hidden_layers=2,
            hidden_size=32,
            intermediate_size=40,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=12,
            max_position_embeddings=64,
            sliding_window=5,
            rope_parameters={"rope_type": "default", "rope_theta": 300.0},
            **_SMALL,
        ),
        {},
    ),
    "qwen2": (  # q/k/v biases; layer_types says which layers slide (window 4)
        lambda: transformers.Qwen2Config(
            num_hidden_layers=3,
            hidden_size=24,
            intermediate_size=40,
            num_attention_heads=3,
            num_key_value_heads=1,
            max_position_embeddings=64,
            use_sliding_window=True,
            sliding_window=4,
            layer_types=["sliding_attention", "full_attention", "sliding_attention"],
            tie_word_embeddings=True,
            **_SMALL,
        ),
        {},
    ),
    "qwen3": (  # q/k norms; attention_bias on q/k/v/o; layers from max_window_layers=1 slide
        lambda: transformers.Qwen3Config(
            num_hidden_layers=2,
            hidden_size=32,
            intermediate_size=48,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=16,
            max_position_embeddings=64,
            use_sliding_window=True,
            sliding_window=6,
            max_window_layers=1,
            attention_bias=True,
            rope_parameters={"rope_type": "default", "rope_theta": 2000.0},
            **_SMALL,
        ),
        {},
    ),
    "gemma": (  # sqrt(hidden) embedding, (1 + w) norms, GeGLU, head_dim 24 (hidden 32 / 2 heads)
        lambda: transformers.GemmaConfig(
            num_hidden_layers=2,
            hidden_size=32,
            intermediate_size=48,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=24,
            max_position_embeddings=64,
            **_SMALL,
        ),
        {},
    ),
    "gemma2": (  # 3 layers: sliding, global, sliding; soft-caps 5 and 3; query_pre_attn_scalar 20
        lambda: transformers.Gemma2Config(
            num_hidden_layers=3,
            hidden_size=32,
            intermediate_size=48,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=8,
            max_position_embeddings=64,
            sliding_window=4,
            query_pre_attn_scalar=20,
            attn_logit_softcapping=5.0,
            final_logit_softcapping=3.0,
            **_SMALL,
        ),
        {},
    ),
    "gemma3": (  # 4 layers, pattern 3: slide, slide, global, slide; local rope base 500
        lambda: transformers.Gemma3TextConfig(
            num_hidden_layers=4,
            hidden_size=32,
            intermediate_size=40,
            num_attention_heads=4,
            num_key_value_heads=1,
            head_dim=8,
            max_position_embeddings=64,
            sliding_window=4,
            sliding_window_pattern=3,
            query_pre_attn_scalar=16,
            rope_parameters={
                "full_attention": {"rope_type": "default", "rope_theta": 20000.0},
                "sliding_attention": {"rope_type": "default", "rope_theta": 500.0},
            },
            **_SMALL,
        ),
        {},
    ),
}


def make_model(name: str, folder) -> transformers.PreTrainedModel:
    """Save the model ``name`` to ``folder``; return it in float32, as read back from there."""
    config_fn, options = {**SPECS, **FAMILY_SPECS}[name]
    torch.manual_seed(sum(map(ord, name)))
    model = transformers.AutoModelForCausalLM.from_config(config_fn())
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0.0, 0.3)
    dtype = options.get("dtype", torch.float32)
    model.to(dtype).save_pretrained(folder, max_shard_size=options.get("max_shard_size", "1GB"))
    return load_reference(folder)


def load_reference(folder) -> transformers.PreTrainedModel:
    return transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()


def reference_logits(model, ids: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.as_tensor(ids)).logits.numpy()


def reference_generate(model, prompt: np.ndarray, new_tokens: int) -> np.ndarray:
    """transformers' greedy ``generate``: the new tokens only (may stop early at eos)."""
    with torch.no_grad():
        out = model.generate(
            torch.as_tensor(prompt),
            attention_mask=torch.ones(prompt.shape, dtype=torch.long),
            do_sample=False,
            max_new_tokens=new_tokens,
            pad_token_id=model.config.eos_token_id,
        )
    return out.numpy()[:, prompt.shape[1] :]


@functools.partial(jax.jit, static_argnums=0)
def logits_of(model, params, ids):
    """Our model's logits, compiled once per model."""
    return model.apply({"params": params}, ids)


def assert_logits_close(ours, ref):
    """Within ``rtol=1e-5`` and ``atol`` 1e-5 of the largest |logit| (float32 sums in another order)."""
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


def random_ids(seed: int, shape) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, VOCAB, shape)


CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n"
    "{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}"
)
TEXT = (
    "the quick brown fox jumps over the lazy dog. user: hello there! assistant: general "
    "kenobi, you are a bold one. système: ça va? the end\n"
)


def make_tokenizer(folder, *, chat_template: bool = True) -> None:
    """Train a small BPE (at most ``VOCAB`` ids) on a short text; save it into ``folder``.

    ``tokenizer.json`` and ``tokenizer_config.json`` (``<s>``/``</s>`` special
    tokens, and the chat template unless ``chat_template=False``), as
    ``transformers``' ``AutoTokenizer.from_pretrained`` reads them.
    """
    import json
    import pathlib

    import tokenizers
    from tokenizers import decoders, models, pre_tokenizers, processors, trainers

    tok = tokenizers.Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False
    )
    tok.train_from_iterator([TEXT] * 4, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))]
    )
    assert tok.get_vocab_size() <= VOCAB
    folder = pathlib.Path(folder)
    tok.save(str(folder / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
    }
    if chat_template:
        config["chat_template"] = CHAT_TEMPLATE
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
