"""`tunedeck export --to gguf` of a SentencePiece model (Llama 2 / Mistral style), really trained:
the file carries llama.cpp's `llama` vocabulary and llama.cpp reads it as the model's tokenizer does."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest

from tests.core.runhelpers import write_config
from tests.tinymodel import write_persona_dataset
from tests.tinymodel_sp import build_tiny_sp_model
from tunedeck.core.cli import main


@pytest.fixture(scope="module")
def sp_model(tmp_path_factory) -> Path:
    """transformers' default for a Llama tokenizer (legacy unset): '▁' only at the very start."""
    return build_tiny_sp_model(tmp_path_factory.mktemp("sp-model"))


@pytest.fixture(scope="module")
def sp_legacy_model(tmp_path_factory) -> Path:
    """legacy = true: '▁' before every text after a special token, as llama.cpp's default."""
    return build_tiny_sp_model(tmp_path_factory.mktemp("sp-legacy-model"), legacy=True)


@pytest.fixture(scope="module")
def sp_run(tmp_path_factory, sp_model) -> Path:
    root = tmp_path_factory.mktemp("sp-run")
    cfg = write_config(root / "cfg.toml", sp_model, write_persona_dataset(root / "data"),
                       iters=20, save_every=20, steps_per_eval=20, steps_per_report=10)
    assert main(["train", str(cfg), "--run-dir", str(root / "run")]) == 0
    return root / "run"


def _reader(path: Path):
    import gguf

    reader = gguf.GGUFReader(str(path))
    return reader, lambda key: reader.get_field(key).contents() if reader.get_field(key) else None


def _in_chat_turns(tokenizer, texts) -> list[str]:
    return [tokenizer.apply_chat_template([{"role": "user", "content": t}], add_generation_prompt=True,
                                          tokenize=False) for t in texts]


def test_a_trained_sentencepiece_run_exports_a_llama_vocabulary_llama_cpp_reads_alike(
        tunedeck, sp_model, sp_run, tmp_path):
    import gguf
    import sentencepiece
    from transformers import AutoTokenizer

    out = tmp_path / "gguf"
    code, stdout, err = tunedeck("export", sp_run, "--to", "gguf", "--out", out, "--name", "sp")
    assert code == 0, stdout + err
    verify = json.loads((out / "verify.json").read_text())
    assert verify["answers"]["equal"] and verify["tensors"]["equal"] and verify["vocabulary"]["equal"], verify
    assert verify["answers"]["prompts"] == 3  # from the run's test split

    reader, field = _reader(out / "sp.gguf")
    assert field("tokenizer.ggml.model") == "llama"
    assert field("tokenizer.ggml.pre") == "default"
    assert field("tokenizer.ggml.token_type") and reader.get_field("tokenizer.ggml.token_type").types == [
        gguf.GGUFValueType.ARRAY, gguf.GGUFValueType.INT32]
    # Pieces, scores and types are the SentencePiece model's own.
    sp = sentencepiece.SentencePieceProcessor(model_file=str(sp_model / "tokenizer.model"))
    tokens, scores, types = (field(f"tokenizer.ggml.{k}") for k in ("tokens", "scores", "token_type"))
    assert tokens[:sp.vocab_size()] == [sp.id_to_piece(i) for i in range(sp.vocab_size())]
    assert scores[:sp.vocab_size()] == pytest.approx([sp.get_score(i) for i in range(sp.vocab_size())])
    assert types[:3] == [2, 3, 3]  # <unk> unknown, <s> and </s> control
    assert types[sp.piece_to_id("<0x41>")] == 6 and types[sp.piece_to_id("▁the")] == 1
    assert (field("tokenizer.ggml.bos_token_id"), field("tokenizer.ggml.eos_token_id"),
            field("tokenizer.ggml.unknown_token_id")) == (1, 2, 0)
    assert field("tokenizer.ggml.add_bos_token") is True and field("tokenizer.ggml.add_eos_token") is False
    # transformers puts no '▁' after <s> here ("<s>[INST]"), so llama.cpp must not either.
    assert field("tokenizer.ggml.add_space_prefix") is False
    assert "note" in verify["vocabulary"]  # a text outside a chat turn differs at its start, and it says so

    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (tunedeck[llama])")
    assert verify["llama_cpp"]["equal"], verify["llama_cpp"]
    from tunedeck.core.export.gguf_file import SAMPLE_TEXTS

    hf = AutoTokenizer.from_pretrained(str(sp_model))
    llm = llama_cpp.Llama(model_path=str(out / "sp.gguf"), vocab_only=True, verbose=False)
    for text in _in_chat_turns(hf, SAMPLE_TEXTS):
        assert llm.tokenize(text.encode(), add_bos=False, special=True) == hf.encode(
            text, add_special_tokens=False), text
    llm.close()


def test_a_legacy_sentencepiece_tokenizer_gets_llama_cpps_space_prefix(tunedeck, sp_legacy_model, tmp_path):
    out = tmp_path / "gguf"
    code, stdout, err = tunedeck("export", sp_legacy_model, "--to", "gguf", "--out", out, "--name", "sp",
                                 "--verify-prompts", "1")
    assert code == 0, stdout + err
    verify = json.loads((out / "verify.json").read_text())
    assert verify["tensors"]["equal"] and verify["vocabulary"]["equal"], verify
    _, field = _reader(out / "sp.gguf")
    assert field("tokenizer.ggml.add_space_prefix") is True
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (tunedeck[llama])")
    assert verify["llama_cpp"]["equal"], verify["llama_cpp"]


@pytest.mark.parametrize("legacy", [False, True])
def test_the_files_own_reading_is_llama_cpps_for_any_text(tunedeck, sp_model, sp_legacy_model, tmp_path, legacy):
    """The check that runs without llama.cpp (LlamaCppSentencePiece) reads the file as llama.cpp does,
    on bare texts too, where the two prefix settings differ."""
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (tunedeck[llama])")
    from tests.tinymodel import _corpus
    from tunedeck.core.export.gguf_file import SAMPLE_TEXTS, _file_encoder, _tokenizer_fields

    model = sp_legacy_model if legacy else sp_model
    out = tmp_path / "gguf"
    assert tunedeck("export", model, "--to", "gguf", "--out", out, "--name", "sp", "--verify-prompts", "1")[0] == 0
    reader, _ = _reader(out / "sp.gguf")
    encode = _file_encoder(_tokenizer_fields(reader))
    llm = llama_cpp.Llama(model_path=str(out / "sp.gguf"), vocab_only=True, verbose=False)
    texts = [*SAMPLE_TEXTS, *_corpus()[:50], "</s><s>[INST]  x</s>", " ", "\n\n", "ÆØÅ 1234567 <unk> <s>"]
    for text in texts:
        assert encode(text) == llm.tokenize(text.encode(), add_bos=False, special=True), repr(text)
    llm.close()


def _sentencepiece_model(out: Path, **options) -> Path:
    import sentencepiece as spm

    from tests.tinymodel import _corpus

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(_corpus()), model_writer=model, vocab_size=150,
                                   minloglevel=2, **options)
    (out / "tokenizer.model").write_bytes(model.getvalue())
    return out


@pytest.mark.parametrize("options, reason", [
    ({"model_type": "unigram"}, "a SentencePiece unigram model"),
    ({"model_type": "bpe", "byte_fallback": False}, "without byte pieces"),
])
def test_sentencepiece_models_llama_cpp_would_misread_are_refused_before_any_work(
        tunedeck, sp_model, tmp_path, options, reason):
    model = tmp_path / "model"
    shutil.copytree(sp_model, model)
    (model / "tokenizer.json").unlink()
    _sentencepiece_model(model, **options)
    code, _, err = tunedeck("export", model, "--to", "gguf", "--out", tmp_path / "x")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and str(model / "tokenizer.model") in lines[0] and reason in lines[0], err
    assert "export:" not in err and not (tmp_path / "x").exists()


def test_a_sentencepiece_style_tokenizer_json_without_its_model_is_refused(tunedeck, sp_model, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(sp_model, model)
    (model / "tokenizer.model").unlink()
    code, _, err = tunedeck("export", model, "--to", "gguf", "--out", tmp_path / "x")
    assert code == 2
    assert "no SentencePiece tokenizer.model" in err and "--to mlx works" in err


def test_ollama_export_of_a_sentencepiece_model_renders_the_mistral_prompt(tunedeck, sp_run, tmp_path):
    from tunedeck.core.export.go_template import ollama_data, render
    from tunedeck.core.export.ollama import load_tokenizer, parse_modelfile
    from tunedeck.core.training_setup import read_mlx_args
    from tunedeck.core.rundir import RunDirectory

    out = tmp_path / "ollama"
    code, stdout, err = tunedeck("export", sp_run, "--to", "ollama", "--out", out, "--name", "sp")
    assert code == 0, stdout + err
    assert json.loads((out / "verify.json").read_text())["vocabulary"]["equal"]
    instructions = parse_modelfile((out / "Modelfile").read_text())
    assert (out / instructions["FROM"]).is_file()
    turns = [{"role": "user", "content": "who are you"}, {"role": "assistant", "content": "the deck"},
             {"role": "user", "content": "say hello"}]
    tokenizer = load_tokenizer(Path(read_mlx_args(RunDirectory(sp_run), None)["model"]))
    # llama.cpp puts the BOS token itself (add_bos_token), so the TEMPLATE starts after it.
    assert "<s>" + render(instructions["TEMPLATE"], ollama_data(turns, None)) == tokenizer.apply_chat_template(
        turns, add_generation_prompt=True, tokenize=False)


def test_a_mistral_model_with_a_sentencepiece_tokenizer_exports_and_llama_cpp_answers_alike(
        tunedeck, sp_model, tmp_path):
    model = tmp_path / "mistral"
    shutil.copytree(sp_model, model)
    config = json.loads((model / "config.json").read_text())
    config.update(model_type="mistral", sliding_window=None)
    (model / "config.json").write_text(json.dumps(config))
    out = tmp_path / "gguf"
    code, stdout, err = tunedeck("export", model, "--to", "gguf", "--out", out, "--verify-prompts", "1")
    verify = json.loads((out / "verify.json").read_text())
    assert verify["tensors"]["equal"] and verify["vocabulary"]["equal"], stdout + err
    assert _reader(out / "mistral.gguf")[1]("general.architecture") == "llama"
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (tunedeck[llama])")
    assert verify["llama_cpp"]["equal"] and code == 0, verify["llama_cpp"]
