"""Build a tiny Mochi-1 with random weights, saved in the layout of
`genmo/mochi-1-preview`, so the runner's real loading code can be tested on a
machine that cannot download the 40 GB of real weights.

Same classes as the real model, small dimensions, a word-level tokenizer made
here from a few sentences: nothing is downloaded. Its videos are noise."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import torch

TINY_MARKER = "mochi_serve_tiny.json"

_SENTENCES = [
    "a cat walks on the grass in the morning sun",
    "a red car drives along a road by the sea at night",
    "waves crash on rocks under a grey sky",
    "a person dances in a city street with lights",
    "slow motion of a bird flying over a forest",
]


def _tokenizer():  # -> PreTrainedTokenizerFast
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(_SENTENCES, trainers.WordLevelTrainer(
        special_tokens=["<pad>", "</s>", "<unk>"]))
    # T5 appends </s> to every prompt; the pipeline's attention mask relies on it.
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", tok.token_to_id("</s>"))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>",
                                   unk_token="<unk>", model_max_length=256)


def build_tiny_pipeline(seed: int = 0):  # -> MochiPipeline
    from diffusers import (AutoencoderKLMochi, FlowMatchEulerDiscreteScheduler, MochiPipeline,
                           MochiTransformer3DModel)
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(seed)
    text_dim = 32
    transformer = MochiTransformer3DModel(
        patch_size=2, num_attention_heads=2, attention_head_dim=8, num_layers=2,
        pooled_projection_dim=16, in_channels=12, text_embed_dim=text_dim, time_embed_dim=4,
        qk_norm="rms_norm", activation_fn="swiglu", max_sequence_length=256)
    vae = AutoencoderKLMochi(
        latent_channels=12, out_channels=3, encoder_block_out_channels=(32,) * 4,
        decoder_block_out_channels=(32,) * 4, layers_per_block=(1,) * 5)
    tokenizer = _tokenizer()
    text_encoder = T5EncoderModel(T5Config(
        d_model=text_dim, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
        feed_forward_proj="gated-gelu", vocab_size=len(tokenizer)))
    return MochiPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae,
                         text_encoder=text_encoder, tokenizer=tokenizer, transformer=transformer)


def save_tiny_model(dest: Path, seed: int = 0) -> Path:
    pipe = build_tiny_pipeline(seed)
    dest.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(dest)
    (dest / TINY_MARKER).write_text(json.dumps({
        "what": "tiny Mochi-1 with random weights, for tests and the embedded default",
        "seed": seed}))
    return dest


def ensure_tiny_model(dest: Path) -> Path:
    """Build the tiny model once; later calls find it on disk."""
    if not (dest / "model_index.json").exists():
        save_tiny_model(dest)
    return dest


def writer_main(write: Callable[[Path, int], Path], doc: str) -> None:
    """The command line of a tiny-model writer (this one and layout_twin's):
    `DEST [--seed N]`; prints where it wrote."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("dest", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(write(args.dest, args.seed))


def main() -> None:
    writer_main(save_tiny_model, __doc__ or "")


if __name__ == "__main__":
    main()
