"""Prompts -> T5 features: the tokenizer of DIR/tokenizer and the ONNX encoder of DIR/text_encoder.

The tokenizer is read with the `tokenizers` library from tokenizer.json (what every Hugging
Face fast tokenizer saves, T5's included), so the runtime needs neither torch nor
transformers. Every prompt is padded to `max_length` tokens (right side, with the pad token
of tokenizer_config.json) and truncated to it with a warning; the attention mask marks real
tokens with 1 and padding with 0.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ptdit_runtime.configs import ConfigError, MissingFile, TextEncoderConfig, read_json
from ptdit_runtime.engines.base import Engine

log = logging.getLogger(__name__)


def _token_text(value) -> str | None:
    if isinstance(value, dict):  # AddedToken as saved by transformers
        return value.get("content")
    return value


class Tokenizer:
    """Fixed-length tokenization with the tokenizers library (no torch, no transformers)."""

    def __init__(self, folder: str | Path, max_length: int):
        from tokenizers import Tokenizer as HFTokenizer

        folder = Path(folder)
        path = folder / "tokenizer.json"
        if not path.is_file():
            raise MissingFile(
                f"{path} is missing: the runtime reads fast-tokenizer files; re-export the text encoder "
                "(onnx_from_t5 saves the tokenizer with AutoTokenizer, which writes tokenizer.json)"
            )
        self.max_length = max_length
        try:
            self._tok = HFTokenizer.from_file(str(path))
        except Exception as err:  # the tokenizers library raises plain Exception for bad files
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise ConfigError(
                f"{path} is not a tokenizer the tokenizers library can read ({reason}); re-export the text encoder"
            ) from None
        pad = unk = None
        for name in ("tokenizer_config.json", "special_tokens_map.json"):
            if (folder / name).is_file():
                special = read_json(folder / name)
                pad = pad or _token_text(special.get("pad_token"))
                unk = unk or _token_text(special.get("unk_token"))
        pad = pad or "<pad>"
        if not isinstance(pad, str) or not isinstance(unk or "", str):
            raise ConfigError(f"{folder}: pad_token / unk_token are not strings; re-export the text encoder")
        self._unk_id = self._tok.token_to_id(unk or "<unk>")
        pad_id = self._tok.token_to_id(pad)
        if pad_id is None:
            raise ConfigError(
                f"pad token {pad!r} of {folder} is not in its vocabulary; re-export the text encoder"
            )
        self._tok.no_padding()
        self._tok.no_truncation()
        self._padded = HFTokenizer.from_str(self._tok.to_str())
        self._padded.enable_truncation(max_length)
        self._padded.enable_padding(direction="right", pad_id=pad_id, pad_token=pad, length=max_length)

    def count(self, prompts: Sequence[str]) -> list[int]:
        """Tokens per prompt, special tokens included, before truncation."""
        return [len(e.ids) for e in self._tok.encode_batch(list(prompts))]

    def unknown_words(self, prompts: Sequence[str]) -> list[list[str]]:
        """Per prompt, the pieces of text the vocabulary lacks (each becomes the unknown token)."""
        if self._unk_id is None:
            return [[] for _ in prompts]
        return [
            [text[a:b] for i, (a, b) in zip(e.ids, e.offsets) if i == self._unk_id]
            for text, e in zip(prompts, self._tok.encode_batch(list(prompts)))
        ]

    def __call__(
        self, prompts: Sequence[str], labels: Sequence[str] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(input_ids, attention_mask), both int64 [B, max_length]; warns about truncation, naming
        each text by `labels` ("prompt 0", "negative prompt 0", ...; default "prompt i", from 0)."""
        labels = labels or [f"prompt {i}" for i in range(len(prompts))]
        for i, n in enumerate(self.count(prompts)):
            if n > self.max_length:
                log.warning(
                    "%s has %d tokens; the text encoder takes %d, so it is truncated: %r",
                    labels[i],
                    n,
                    self.max_length,
                    prompts[i][:60] + ("..." if len(prompts[i]) > 60 else ""),
                )
        encoded = self._padded.encode_batch(list(prompts))
        ids = np.array([e.ids for e in encoded], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
        return ids, mask


class TextEncoder:
    """Tokenizer + encoder engine: prompts -> (features float32 [B, L, D], mask int64 [B, L])."""

    def __init__(self, engine: Engine, tokenizer: Tokenizer, config: TextEncoderConfig):
        self.engine, self.tokenizer, self.config = engine, tokenizer, config
        self.output = (
            "last_hidden_state" if "last_hidden_state" in engine.outputs else next(iter(engine.outputs))
        )

    def __call__(
        self, prompts: Sequence[str], labels: Sequence[str] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        ids, mask = self.tokenizer(prompts, labels)
        out = self.engine.run({"input_ids": ids, "attention_mask": mask})[self.output]
        return np.ascontiguousarray(out, dtype=np.float32), mask
