"""Build a tiny random-weight Llama and its tokenizer locally (no download), for vLLM CPU tests.

The model is nonsense by design (random weights); it exists so that the real vLLM engine, its
structured-output grammar, the OpenAI-compatible server and the offline ``vllm.LLM`` path can be
exercised end to end on a CPU. Shapes follow the vLLM CPU attention kernel's constraints:
hidden 128 with 2 heads (head_dim 64; head_dim 16 is rejected).

The tokenizer is a byte-level BPE (every UTF-8 string is encodable, umlauts included) trained with
``tokenizers`` on the structurer's own prompt and schema vocabulary, plus a chat template, so that
both ``/v1/chat/completions`` and ``vllm.LLM.chat`` work. The build is deterministic (seeded).

Run with the vLLM environment's Python (it has transformers)::

    .venv-vllm/bin/python scripts/make_tiny_llm.py --out build/tiny-llm
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

log = logging.getLogger("make_tiny_llm")

SPECIAL_TOKENS = ["<|pad|>", "<|bos|>", "<|eos|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def _training_corpus() -> list[str]:
    """Strings the BPE merges are learnt from: the prompt, the schema and its vocabularies."""
    from schemas.labels import ALL_LABELS, ASSERTIONS
    from schemas.report_schema import REPORT_JSON_SCHEMA, SECTION_NAMES
    from workers.llm.prompt import REPORT_TYPES, SYSTEM_PROMPT, USER_TEMPLATE, GenerationBounds
    from workers.llm.prompt import generation_schema as gen_schema

    corpus = [SYSTEM_PROMPT, USER_TEMPLATE, json.dumps(REPORT_JSON_SCHEMA)]
    corpus += [json.dumps(gen_schema(rt, "en", GenerationBounds())) for rt in REPORT_TYPES]
    corpus += [f'"{w}"' for w in (*ALL_LABELS, *ASSERTIONS, *SECTION_NAMES, *REPORT_TYPES)]
    corpus += ['{"schema_version":"1.0","report_type":"cardiology","language":"de","sections":{},']
    corpus += ['"findings":[{"label":"sinus_rhythm","assertion":"present","section":"findings"}]']
    return corpus * 4


def build(out: Path, vocab_size: int = 1024, seed: int = 0) -> Path:
    """Write config, safetensors weights, tokenizer and chat template into ``out``; return it."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out.mkdir(parents=True, exist_ok=True)

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_training_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|bos|>",
        eos_token="<|eos|>",
        pad_token="<|pad|>",
        model_max_length=4096,
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(str(out))

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.convert_tokens_to_ids("<|end|>"),
        pad_token_id=fast.pad_token_id,
        tie_word_embeddings=False,
        torch_dtype="float32",
    )
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = [config.eos_token_id, fast.eos_token_id]
    model.save_pretrained(str(out), safe_serialization=True)
    log.info(
        "tiny Llama written: vocab %d, %d parameters", len(fast), sum(p.numel() for p in model.parameters())
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "build" / "tiny-llm")
    parser.add_argument("--vocab-size", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    build(args.out, vocab_size=args.vocab_size, seed=args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
