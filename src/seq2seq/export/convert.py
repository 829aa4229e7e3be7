"""`seq2seq export`: a Transformer run's checkpoint as a CTranslate2 model directory.

The model is described with CTranslate2's own `TransformerSpec` and written by its converter
base, which validates the spec, quantizes the weights and saves them. What our Transformer
does that CTranslate2 must be told explicitly:

- Positions: our table interleaves sin and cos (even columns sin, odd cos); CTranslate2's
  built-in table puts all the sines first, so without our table it would decode silently
  wrong. The table is exported, for the encoder and decoder alike.
- Embeddings are scaled by sqrt(d_model) before the positions are added; so are CTranslate2's.
- Post-norm (the paper) normalises after each residual sum and has no final norm; pre-norm
  normalises each sublayer's input and ends each stack with a norm of its own.
- Our attention projects the query alone and keys and values together (`key_value`); a
  CTranslate2 self-attention takes one fused query-key-value matrix, so the two are stacked.
- A tied output layer is the decoder's embedding, and a shared source embedding is that same
  matrix: CTranslate2 stores each array once (its converter aliases equal variables).
- PyTorch's LayerNorm epsilon is 1e-5; CTranslate2's default is 1e-6.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch

from seq2seq import writing
from seq2seq.checkpoint import Checkpoint, subword_files
from seq2seq.data.vocab import EOS, SOS, UNK
from seq2seq.errors import Seq2SeqError
from seq2seq.export import manifest
from seq2seq.export.requirement import ctranslate2
from seq2seq.loader import load_checkpoint
from seq2seq.models.transformer import Transformer, sinusoids

# The export needs CTranslate2 throughout; without it, importing this module says what to install.
ct2 = ctranslate2()
specs = ct2.specs

QUANTIZATIONS = ("int8", "int8_float32", "bfloat16", "float32")


def export_run(run: str | Path, output: str | Path, *, quantization: str = "int8") -> Path:
    """Write the CTranslate2 model directory of `run` (a run directory, meaning its best
    checkpoint, or a checkpoint directory) to `output`, which must not exist yet."""
    if quantization not in QUANTIZATIONS:
        raise Seq2SeqError(
            f"--quantization must be one of {', '.join(QUANTIZATIONS)} (got {quantization!r})"
        )
    output = Path(output)
    if output.exists():
        raise Seq2SeqError(f"{output} already exists; remove it or give another --output")
    ckpt = load_checkpoint(run)
    _check_exportable(ckpt)
    rows = position_rows(ckpt)
    # Written beside the output and renamed into place, so that a failed export leaves nothing
    # that looks like an export.
    with writing.staged_dir(output) as staging:
        # The converter replaces the (empty) folder it is given only when forced to.
        _Converter(ckpt, rows).convert(str(staging), quantization=quantization, force=True)
        _copy_run_files(ckpt, staging)
        manifest.Manifest(
            checkpoint=str(ckpt.path),
            epoch=ckpt.meta.get("epoch"),
            step=ckpt.meta.get("step"),
            quantization=quantization,
            ctranslate2_version=ct2.__version__,
            position_rows=rows,
            text=_text_settings(ckpt),
        ).write(staging)
    return output


def position_rows(ckpt: Checkpoint) -> int:
    """Enough positions for the longest source the run reads (data.max_length tokens, with
    <sos> and <eos>) and for its output at the default length limit (1.5 x + 10)."""
    longest = ckpt.config.data.max_length
    return max(longest + 2, int(1.5 * longest) + 10 + 1)


def _check_exportable(ckpt: Checkpoint) -> None:
    kind = ckpt.config.model.type
    if kind != "transformer":
        raise Seq2SeqError(
            f"{ckpt.path} is a model.type={kind} run; CTranslate2 has no recurrent decoder, so "
            f"only Transformer runs export (decode this one faster with --quantize int8)"
        )
    assert isinstance(ckpt.model, Transformer), type(ckpt.model)


class _Converter(ct2.converters.Converter):
    """CTranslate2's converter base over one of our Transformer checkpoints."""

    def __init__(self, ckpt: Checkpoint, rows: int):
        self.ckpt, self.rows = ckpt, rows

    def _load(self):
        model, config = self.ckpt.model, self.ckpt.config.model
        spec = specs.TransformerSpec.from_config(
            (config.encoder_layers, config.decoder_layers), config.heads, pre_norm=config.pre_norm
        )
        table = _array(sinusoids(self.rows, config.d_model))
        _set_stack(spec.encoder, model.src_embedding, model.encoder_norm, table)
        _set_stack(spec.decoder, model.tgt_embedding, model.decoder_norm, table)
        for layer_spec, layer in zip(spec.encoder.layer, model.encoder_layers, strict=True):
            _set_self_attention(layer_spec.self_attention, layer.attention, layer.blocks[0])
            _set_feed_forward(layer_spec.ffn, layer.feed_forward, layer.blocks[1])
        for layer_spec, layer in zip(spec.decoder.layer, model.decoder_layers, strict=True):
            _set_self_attention(layer_spec.self_attention, layer.self_attention, layer.blocks[0])
            _set_cross_attention(layer_spec.attention, layer.cross_attention, layer.blocks[1])
            _set_feed_forward(layer_spec.ffn, layer.feed_forward, layer.blocks[2])
        spec.decoder.projection.weight = _array(model.output.weight)
        _set_config(spec.config)
        spec.register_source_vocabulary(self.ckpt.src_vocab.itos)
        spec.register_target_vocabulary(self.ckpt.tgt_vocab.itos)
        return spec


def _set_config(config) -> None:
    config.unk_token, config.bos_token, config.eos_token = UNK, SOS, EOS
    config.decoder_start_token = SOS
    # Our sources are <sos> tokens <eos>; CTranslate2 adds both, so callers pass tokens alone.
    config.add_source_bos = config.add_source_eos = True
    config.layer_norm_epsilon = torch.nn.LayerNorm(1).eps


def _set_stack(spec, embedding, final_norm, table: np.ndarray) -> None:
    embeddings = spec.embeddings  # an encoder may read several; ours reads one
    (embeddings[0] if isinstance(embeddings, list) else embeddings).weight = _array(
        embedding.weight
    )
    spec.position_encodings.encodings = table
    if hasattr(spec, "layer_norm"):  # pre-norm stacks end in a norm
        _set_norm(spec.layer_norm, final_norm)


def _set_self_attention(spec, attention, block) -> None:
    spec.linear[0].weight = _cat(attention.query.weight, attention.key_value.weight)
    spec.linear[0].bias = _cat(attention.query.bias, attention.key_value.bias)
    _set_linear(spec.linear[1], attention.out)
    _set_norm(spec.layer_norm, block.norm)


def _set_cross_attention(spec, attention, block) -> None:
    _set_linear(spec.linear[0], attention.query)
    _set_linear(spec.linear[1], attention.key_value)  # keys then values, as CTranslate2 splits
    _set_linear(spec.linear[2], attention.out)
    _set_norm(spec.layer_norm, block.norm)


def _set_feed_forward(spec, feed_forward, block) -> None:
    _set_linear(spec.linear_0, feed_forward[0])
    _set_linear(spec.linear_1, feed_forward[3])
    _set_norm(spec.layer_norm, block.norm)


def _set_linear(spec, linear: torch.nn.Linear) -> None:
    spec.weight = _array(linear.weight)
    if linear.bias is not None:
        spec.bias = _array(linear.bias)


def _set_norm(spec, norm: torch.nn.LayerNorm) -> None:
    spec.gamma, spec.beta = _array(norm.weight), _array(norm.bias)


def _cat(*tensors: torch.Tensor) -> np.ndarray:
    return _array(torch.cat(tensors))


def _array(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().float().cpu().numpy()


def _copy_run_files(ckpt: Checkpoint, directory: Path) -> None:
    """The run's config, vocabularies and SentencePiece models: the text pipeline's settings."""
    for name in {"config.yaml", "vocab.json", *subword_files(ckpt.config.data).values()}:
        shutil.copyfile(ckpt.path / name, directory / name)


def _text_settings(ckpt: Checkpoint) -> dict:
    data = ckpt.config.data
    return {
        "tokenizer": data.tokenizer,
        "src_lang": data.src_lang,
        "tgt_lang": data.tgt_lang,
        "lowercase": data.lowercase,
        "reverse_source": data.reverse_source,
        "max_length": data.max_length,
        "sentencepiece_models": subword_files(data),
    }
