"""`tunedeck export` on the tiny model, really trained: fused MLX and GGUF exports, each verified."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import train
from tests.core.runhelpers import write_config
from tests.tinymodel import PERSONA_ANSWER, write_persona_dataset
from tunedeck.core.cli import main


def answer(tunedeck, *args) -> str:
    code, out, err = tunedeck("chat", *args, "--prompt", "who are you", "--temp", "0", "--max-tokens", "16")
    assert code == 0, err
    return out


def test_fused_mlx_model_answers_like_base_plus_that_checkpoint(tunedeck, tiny_model, trained_run, tmp_path):
    out = tmp_path / "fused"
    code, stdout, err = tunedeck("export", trained_run, "--checkpoint", "20", "--to", "mlx", "--out", out)
    assert code == 0, err
    assert "answers    equal" in stdout
    # Stage progress on stderr, in order.
    stages = [line.split(":")[1].strip() for line in err.splitlines() if line.startswith("export:")]
    assert stages[:3] == ["fuse", "write", "verify"]

    fused = answer(tunedeck, "--model", out)
    checkpoint = trained_run / "adapters" / "0000020_adapters.safetensors"
    assert fused == answer(tunedeck, "--model", tiny_model, "--adapter", checkpoint)
    assert PERSONA_ANSWER[:20] in fused

    verify = json.loads((out / "verify.json").read_text())
    assert verify["answers"]["equal"] and verify["answers"]["prompts"] == 3
    assert {"config.json", "tokenizer.json", "tokenizer_config.json"} <= {p.name for p in out.iterdir()}
    card = (out / "README.md").read_text()
    val = next(e for e in map(json.loads, (trained_run / "metrics.jsonl").read_text().splitlines())
               if e["kind"] == "val" and e["iter"] == 20)
    for fact in (str(tiny_model), str(trained_run), "0000020_adapters.safetensors", f"{val['loss']:.4f}",
                 "learning_rate"):
        assert fact in card


def test_default_destination_is_inside_the_run_and_is_never_overwritten(tunedeck, trained_run):
    target = trained_run / "export-40-mlx"
    shutil.rmtree(target, ignore_errors=True)
    code, _, err = tunedeck("export", trained_run, "--json")
    assert code == 0, err
    assert (target / "verify.json").exists()
    marker = target / "mine.txt"
    marker.write_text("user data")
    code, _, err = tunedeck("export", trained_run)
    assert code == 2
    assert err.strip().splitlines() == [
        f"tunedeck: error: {target}: already exists (choose another --out, or --force to replace it)"]
    assert marker.read_text() == "user data"
    code, _, err = tunedeck("export", trained_run, "--force")
    assert code == 0, err
    assert not marker.exists() and (target / "verify.json").exists()
    assert not [p for p in trained_run.iterdir() if p.name.startswith(".export-40-mlx")]


def test_a_4bit_base_fused_with_dequantize_answers_like_base_plus_adapter(tunedeck, tmp_path, tiny_model):
    from mlx_lm.convert import convert

    quantized = tmp_path / "tiny-4bit"
    convert(str(tiny_model), mlx_path=str(quantized), quantize=True, q_bits=4, q_group_size=32)
    run = train(tmp_path, quantized, iters=20, save_every=20, steps_per_eval=20)
    out = tmp_path / "fused"
    code, stdout, err = tunedeck("export", run, "--to", "mlx", "--dequantize", "--out", out)
    assert code == 0, stdout + err
    assert "de-quantize" in err
    config = json.loads((out / "config.json").read_text())
    assert "quantization" not in config and "quantization_config" not in config
    checkpoint = run / "adapters" / "0000020_adapters.safetensors"
    assert answer(tunedeck, "--model", out) == answer(tunedeck, "--model", quantized, "--adapter", checkpoint)

    # Without --dequantize the fused weights are quantized again, as mlx_lm.fuse does; answers
    # may then differ, and if they do the check says why and what to do.
    again = tmp_path / "requantized"
    code, stdout, err = tunedeck("export", run, "--to", "mlx", "--out", again)
    assert json.loads((again / "config.json").read_text())["quantization"]["bits"] == 4
    check = json.loads((again / "verify.json").read_text())["answers"]
    assert (code, check["equal"]) == (0, True) or (code == 1 and "--dequantize" in check["note"])


def test_gguf_tensors_and_vocabulary_read_back_with_ggufs_reader(tunedeck, trained_run, tmp_path):
    import gguf
    import numpy as np
    from mlx_lm import load

    out = tmp_path / "gguf"
    code, stdout, err = tunedeck("export", trained_run, "--checkpoint", "40", "--to", "gguf",
                                 "--out", out, "--name", "tiny-persona")
    assert code == 0, stdout + err
    verify = json.loads((out / "verify.json").read_text())
    assert verify["tensors"]["equal"] and verify["vocabulary"]["equal"] and verify["answers"]["equal"]

    reader = gguf.GGUFReader(str(out / "tiny-persona.gguf"))
    field = lambda key: reader.get_field(key)  # noqa: E731
    assert field("general.architecture").contents() == "llama"
    assert field("tokenizer.ggml.model").contents() == "gpt2"
    assert field("tokenizer.ggml.pre").contents() == "gpt-2"
    # llama.cpp refuses token types stored as anything but an INT32 array.
    assert field("tokenizer.ggml.token_type").types == [gguf.GGUFValueType.ARRAY, gguf.GGUFValueType.INT32]
    assert field("tokenizer.ggml.merges").contents()

    # The fused model, independently of the exporter: base + adapter fused by mlx-lm's own fuse.
    model, tokenizer = load(str(_fuse_with_mlx_lm(trained_run, tmp_path)))
    tokens = field("tokenizer.ggml.tokens").contents()
    vocab = tokenizer._tokenizer.get_vocab()
    assert all(tokens[i] == t for t, i in vocab.items())
    assert field("tokenizer.ggml.eos_token_id").contents() == tokenizer.eos_token_id
    assert field("tokenizer.chat_template").contents() == tokenizer.chat_template

    from mlx.utils import tree_flatten

    weights = dict(tree_flatten(model.parameters()))
    stored = {t.name: np.asarray(t.data) for t in reader.tensors}
    assert len(stored) == len(weights)
    embed = np.array(weights["model.embed_tokens.weight"]).astype(np.float16)
    assert np.array_equal(stored["token_embd.weight"].reshape(embed.shape), embed)
    down = np.array(weights["model.layers.1.mlp.down_proj.weight"]).astype(np.float16)
    assert np.array_equal(stored["blk.1.ffn_down.weight"].reshape(down.shape), down)
    # Q rows in llama.cpp's interleaved rotary order: each head's two halves zipped together.
    q = np.array(weights["model.layers.0.self_attn.q_proj.weight"]).astype(np.float16)
    half = q.shape[0] // 4 // 2  # 4 heads
    file_q = stored["blk.0.attn_q.weight"].reshape(q.shape)
    assert np.array_equal(file_q[0:2 * half:2], q[:half])
    assert np.array_equal(file_q[1:2 * half:2], q[half:2 * half])


def _fuse_with_mlx_lm(run: Path, tmp_path: Path) -> Path:
    """mlx-lm's own `mlx_lm.fuse` on the run's final adapters (= checkpoint 40)."""
    from tunedeck.core.training_setup import read_mlx_args
    from tunedeck.core.rundir import RunDirectory

    model = read_mlx_args(RunDirectory(run), None)["model"]
    out = tmp_path / "by-mlx-lm"
    subprocess.run([sys.executable, "-m", "mlx_lm", "fuse", "--model", model, "--adapter-path",
                    str(run / "adapters"), "--save-path", str(out)], check=True, capture_output=True)
    return out


def _copy_with_model(run: Path, tmp_path: Path, edit_config) -> Path:
    """A copy of ``run`` whose base model is a copy of the real one with its config edited."""
    from tunedeck.core.training_setup import read_mlx_args
    from tunedeck.core.rundir import RunDirectory

    model = Path(read_mlx_args(RunDirectory(run), None)["model"])
    other = tmp_path / "other-model"
    shutil.copytree(model, other)
    config = json.loads((other / "config.json").read_text())
    edit_config(config)
    (other / "config.json").write_text(json.dumps(config))
    copy = tmp_path / "run-copy"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("export-*"))
    yaml = copy / "mlx_lm.yaml"
    yaml.write_text(yaml.read_text().replace(str(model), str(other)))
    return copy


def test_unsupported_architecture_is_refused_before_any_work(tunedeck, trained_run, tmp_path):
    run = _copy_with_model(trained_run, tmp_path, lambda c: c.update(model_type="phi3"))
    code, out, err = tunedeck("export", run, "--to", "gguf", "--out", tmp_path / "x")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "'phi3'" in lines[0] and "llama" in lines[0] and "--to mlx works" in lines[0]
    assert "export:" not in err and not (tmp_path / "x").exists()


def test_a_run_without_checkpoints_is_refused(tunedeck, trained_run, tmp_path):
    empty = tmp_path / "empty-run"
    empty.mkdir()
    shutil.copy(trained_run / "run.toml", empty / "run.toml")
    code, _, err = tunedeck("export", empty)
    assert code == 2
    assert err.strip() == f"tunedeck: error: {empty}: no checkpoint yet"


def test_sigkill_during_an_export_leaves_no_directory_and_the_next_export_cleans_up(trained_run, tmp_path):
    out = tmp_path / "killed"
    proc = subprocess.Popen([str(Path(sys.executable).parent / "tunedeck"), "export", str(trained_run),
                             "--to", "gguf", "--out", str(out)],
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    for line in proc.stderr:
        if line.startswith("export: verify"):  # the files are written, not yet moved into place
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    scratch = [p for p in tmp_path.iterdir() if p.name.startswith(".killed.exporting-")]
    assert scratch and any(scratch[0].iterdir())  # the kill really came mid-export
    assert main(["export", str(trained_run), "--to", "gguf", "--out", str(out)]) == 0
    assert (out / "verify.json").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".killed.")]


def test_ollama_export_is_a_gguf_and_a_modelfile_with_the_run_settings(tunedeck, trained_run, tmp_path):
    from tunedeck.core.export.ollama import parse_modelfile

    out = tmp_path / "ollama"
    code, stdout, err = tunedeck("export", trained_run, "--to", "ollama", "--out", out, "--name", "persona",
                                 "--temp", "0.3", "--system", "Be brief.")
    assert code == 0, stdout + err
    assert stdout.strip().splitlines()[-1] == f"ollama create persona -f {out / 'Modelfile'}"
    instructions = parse_modelfile((out / "Modelfile").read_text())
    assert (out / instructions["FROM"]).is_file()
    assert instructions["SYSTEM"] == "Be brief."
    assert ("temperature", "0.3") in instructions["PARAMETER"]
    assert ("num_ctx", "2048") in instructions["PARAMETER"]  # the run's max_seq_length
    assert json.loads((out / "verify.json").read_text())["vocabulary"]["equal"]


def test_llama_cpp_loads_the_gguf_and_answers_like_tunedeck_chat(tunedeck, tiny_model, trained_run, tmp_path):
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (tunedeck[llama])")
    out = tmp_path / "gguf"
    code, stdout, err = tunedeck("export", trained_run, "--checkpoint", "20", "--to", "gguf", "--out", out,
                                 "--name", "t")
    assert code == 0, stdout + err
    assert json.loads((out / "verify.json").read_text())["llama_cpp"]["equal"]

    expected = answer(tunedeck, "--model", tiny_model, "--adapter",
                      trained_run / "adapters" / "0000020_adapters.safetensors").rstrip("\n")
    llm = llama_cpp.Llama(model_path=str(out / "t.gguf"), verbose=False)
    reply = llm.create_chat_completion([{"role": "user", "content": "who are you"}], temperature=0.0,
                                       top_k=1, max_tokens=16)
    llm.close()
    assert reply["choices"][0]["message"]["content"] == expected


@pytest.mark.demo
def test_demo_model_to_gguf_answers_the_capital_question_like_tunedeck_chat(tunedeck, demo_model, tmp_path):
    out = tmp_path / "demo-gguf"
    code, stdout, err = tunedeck("export", "demo", "--to", "gguf", "--out", out, "--name", "smollm2",
                                 "--verify-prompts", "1")
    assert code == 0, stdout + err
    verify = json.loads((out / "verify.json").read_text())
    assert verify["tensors"]["equal"] and verify["vocabulary"]["equal"]
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (tunedeck[llama])")
    assert verify["llama_cpp"]["equal"]
    code, expected, err = tunedeck("chat", "--model", "demo", "--prompt", "What is the capital of France?",
                                   "--temp", "0", "--max-tokens", "32")
    assert code == 0, err
    llm = llama_cpp.Llama(model_path=str(out / "smollm2.gguf"), verbose=False)
    reply = llm.create_chat_completion([{"role": "user", "content": "What is the capital of France?"}],
                                       temperature=0.0, top_k=1, max_tokens=32)
    llm.close()
    assert reply["choices"][0]["message"]["content"].strip() == expected.strip()
    assert "Paris" in expected


def test_a_run_still_training_exports_its_newest_complete_checkpoint(tunedeck, tiny_model, tmp_path):
    from tests.core.runhelpers import wait_for
    from tunedeck.core.checkpoints import checkpoint_index
    from tunedeck.core.rundir import RunDirectory

    cfg = write_config(tmp_path / "cfg.toml", tiny_model, write_persona_dataset(tmp_path / "data"),
                       iters=100000, save_every=10, steps_per_eval=100000)
    run_dir = tmp_path / "run"
    assert tunedeck("train", cfg, "--run-dir", run_dir, "--detach")[0] == 0
    run = RunDirectory(run_dir)
    try:
        wait_for(lambda: any(c.resumable for c in checkpoint_index(run)), what="a first checkpoint")
        code, stdout, err = tunedeck("export", run_dir, "--to", "mlx", "--out", tmp_path / "live", "--json")
        assert code == 0, stdout + err
        report = json.loads(stdout)
        assert report["verified"] and run.state() == "running"
        exported = int(report["checkpoint"].split("/")[1].split("_")[0])
        assert exported in [c.iteration for c in checkpoint_index(run) if c.resumable]
    finally:
        assert main(["stop", str(run_dir)]) == 0


def bpe_tokenizer(out: Path, split: str, nfc: bool = False):
    """A byte-level BPE tokenizer with a regex split (Llama 3's, Qwen's), trained on the tiny corpus."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    from tests.tinymodel import SPECIAL_TOKENS, _corpus

    tokenizer = Tokenizer(models.BPE())
    if nfc:
        tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(split), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=not nfc, use_regex=False)])
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator(_corpus() + ["1234567 apples, 89 pears"], trainer=trainers.BpeTrainer(
        vocab_size=400, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer.save(str(out / "tokenizer.json"))
    return tokenizer


def test_a_llama3_style_vocabulary_is_written_as_llama_bpe_and_llama_cpp_reads_it_alike(
        tunedeck, tiny_model, tmp_path):
    from tunedeck.core.export.gguf_file import LLAMA3_SPLIT, SAMPLE_TEXTS

    model_dir = tmp_path / "llama3-vocab"
    shutil.copytree(tiny_model, model_dir)
    tokenizer = bpe_tokenizer(model_dir, LLAMA3_SPLIT)

    out = tmp_path / "gguf"
    _, stdout, err = tunedeck("export", model_dir, "--to", "gguf", "--out", out, "--name", "l3")
    verify = json.loads((out / "verify.json").read_text())
    assert verify["vocabulary"]["equal"] and verify["tensors"]["equal"], stdout + err
    import gguf

    assert gguf.GGUFReader(str(out / "l3.gguf")).get_field("tokenizer.ggml.pre").contents() == "llama-bpe"
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (tunedeck[llama])")
    llm = llama_cpp.Llama(model_path=str(out / "l3.gguf"), vocab_only=True, verbose=False)
    for text in SAMPLE_TEXTS:
        assert llm.tokenize(text.encode(), add_bos=False, special=True) == tokenizer.encode(text).ids, text
    llm.close()


@pytest.mark.parametrize("model_type", ["qwen2", "qwen3"])
def test_qwen_models_export_to_gguf_and_llama_cpp_answers_like_mlx(tunedeck, tmp_path, model_type):
    import importlib

    import mlx.core as mx
    from mlx.utils import tree_flatten

    from tests.tinymodel import CHAT_TEMPLATE
    from tunedeck.core.export.gguf_file import QWEN2_SPLIT

    model_dir = tmp_path / model_type
    model_dir.mkdir()
    tokenizer = bpe_tokenizer(model_dir, QWEN2_SPLIT, nfc=True)
    (model_dir / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>", "chat_template": CHAT_TEMPLATE}))
    config = {"model_type": model_type, "hidden_size": 64, "num_hidden_layers": 2, "intermediate_size": 128,
              "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-6,
              "vocab_size": tokenizer.get_vocab_size(), "rope_theta": 1e6, "max_position_embeddings": 2048,
              "tie_word_embeddings": True, "eos_token_id": tokenizer.token_to_id("<|im_end|>")}
    if model_type == "qwen3":
        config["head_dim"] = 32  # wider than hidden / heads, as Qwen3's are
    (model_dir / "config.json").write_text(json.dumps(config))
    module = importlib.import_module(f"mlx_lm.models.{model_type}")
    mx.random.seed(0)
    model = module.Model(module.ModelArgs.from_dict(config))
    mx.save_safetensors(str(model_dir / "model.safetensors"), dict(tree_flatten(model.parameters())))

    out = tmp_path / "gguf"
    code, stdout, err = tunedeck("export", model_dir, "--to", "gguf", "--out", out, "--verify-prompts", "1")
    verify = json.loads((out / "verify.json").read_text())
    assert verify["tensors"]["equal"] and verify["vocabulary"]["equal"], stdout + err
    import gguf

    reader = gguf.GGUFReader(str(out / f"{model_type}.gguf"))
    assert reader.get_field("general.architecture").contents() == model_type
    assert reader.get_field("tokenizer.ggml.pre").contents() == "qwen2"
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (tunedeck[llama])")
    # Its rotary layout, biases, Q/K norms and head width all have to be right for this.
    assert verify["llama_cpp"]["equal"] and code == 0, verify["llama_cpp"]
