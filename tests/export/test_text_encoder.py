"""onnx_from_t5: ONNX Runtime against transformers on a tiny random T5 with a locally built tokenizer.

Tolerance: fp32 graph vs fp32 eager, relative max error 1e-5 (measured ~1e-7).
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from tests.conftest import assert_close
from tests.runtime import builders

FP32_REL = 1e-5


@pytest.fixture(scope="module")
def exported():
    return builders.text_export()


def test_onnx_matches_transformers(exported):
    import onnxruntime as ort
    from transformers import T5EncoderModel

    model = T5EncoderModel.from_pretrained(builders.t5_folder()).eval()
    session = ort.InferenceSession(str(exported / "text_encoder" / "model.onnx"))
    g = torch.Generator().manual_seed(0)
    for batch, length in ((1, 16), (3, 16), (2, 7), (4, 40)):  # dynamic batch and length
        ids = torch.randint(0, model.config.vocab_size, (batch, length), generator=g)
        mask = torch.ones(batch, length, dtype=torch.int64)
        mask[-1, length // 2 :] = 0  # a padded row
        with torch.no_grad():
            want = model(input_ids=ids, attention_mask=mask).last_hidden_state
        got = session.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]
        assert_close(got, want, FP32_REL, f"T5 last_hidden_state at batch {batch}, length {length}")


def test_folder_layout_and_config(exported):
    config = json.loads((exported / "text_encoder" / "config.json").read_text())
    assert config["max_length"] == builders.MAX_LENGTH and config["hidden_size"] == 64
    index = json.loads((exported / "model_index.json").read_text())
    assert index["text_encoder"] == "text_encoder" and index["tokenizer"] == "tokenizer"
    import onnx

    model = onnx.load(str(exported / "text_encoder" / "model.onnx"))
    assert model.ir_version <= 13
    assert [i.name for i in model.graph.input] == ["input_ids", "attention_mask"]
    assert [o.name for o in model.graph.output] == ["last_hidden_state"]


def test_runtime_tokenizer_matches_transformers(exported):
    """The runtime's tokenizers-only path pads, truncates and masks exactly like AutoTokenizer."""
    from transformers import AutoTokenizer

    from ptdit_runtime.text import Tokenizer

    hf = AutoTokenizer.from_pretrained(exported / "tokenizer", local_files_only=True)
    ours = Tokenizer(exported / "tokenizer", builders.MAX_LENGTH)
    prompts = ["a red circle", "", "zebra on the left", " ".join(["blue square"] * 12), "the   big  red"]
    want = hf(
        prompts, padding="max_length", truncation=True, max_length=builders.MAX_LENGTH, return_tensors="np"
    )
    ids, mask = ours(prompts)
    np.testing.assert_array_equal(ids, want["input_ids"])
    np.testing.assert_array_equal(mask, want["attention_mask"])
    assert ids[0, 3] == hf.eos_token_id and ids[1, 0] == hf.eos_token_id  # "</s>" appended
    assert ids[3, -1] == hf.eos_token_id  # truncation keeps the end-of-sequence token


def test_text_encoder_stage_matches_transformers(exported, caplog):
    from transformers import T5EncoderModel

    from ptdit_runtime.configs import TextEncoderConfig
    from ptdit_runtime.engines import load_engine
    from ptdit_runtime.text import TextEncoder, Tokenizer

    config = TextEncoderConfig.from_dict(json.loads((exported / "text_encoder" / "config.json").read_text()))
    stage = TextEncoder(
        load_engine(exported / "text_encoder", "onnxruntime", provider="cpu"),
        Tokenizer(exported / "tokenizer", config.max_length),
        config,
    )
    prompts = ["a red circle on the blue background", " ".join(["red"] * 30)]
    with caplog.at_level(logging.WARNING, logger="ptdit_runtime.text"):
        feats, mask = stage(prompts)
    assert "prompt 1 has 31 tokens" in caplog.text and "prompt 0" not in caplog.text
    model = T5EncoderModel.from_pretrained(builders.t5_folder()).eval()
    with torch.no_grad():
        want = model(
            input_ids=torch.from_numpy(stage.tokenizer(prompts)[0]), attention_mask=torch.from_numpy(mask)
        )
    assert feats.shape == (2, builders.MAX_LENGTH, 64) and mask[0].sum() == 8
    assert_close(feats, want.last_hidden_state, FP32_REL, "text encoder stage")


def test_bad_folders_are_refused(tmp_path):
    from ptdit_export.export.text_encoder import onnx_from_t5

    with pytest.raises(FileNotFoundError, match="not a Hugging Face model folder"):
        onnx_from_t5(tmp_path, tmp_path / "out")
