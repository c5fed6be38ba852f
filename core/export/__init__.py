"""Export: a checkpoint leaves tunedeck as a fused MLX model, a GGUF file or an Ollama model,
and every export is verified against base + adapter before it is called done.

Work happens in a hidden sibling of the destination (``.NAME.exporting-PID``) that is renamed into
place at the very end, so a killed export never leaves a half-written model under the name the
user asked for. Stages (fuse, de-quantize, write, verify) are reported through ``progress``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..adapters import AdapterRef
from ..errors import BadInput, WorkFailed
from ..progress import Progress
from ..rundir import RunDirectory, write_atomic

FORMATS = ("mlx", "gguf", "ollama")
GGUF_TYPES = ("f16", "q8_0")
VERIFY_FILE = "verify.json"
_SCRATCH = ".exporting-"


@dataclass
class ExportRequest:
    run: Path                            # a run directory, or a model (a directory or "demo")
    to: str = "mlx"
    checkpoint: Optional[str] = None     # ITER, "best", "final", or None for the latest
    out: Optional[Path] = None
    dequantize: bool = False
    name: Optional[str] = None
    force: bool = False
    gguf_type: str = "f16"
    prompts: int = 3                     # K: verification prompts
    # Ollama: the Chat settings a Modelfile carries.
    temperature: float = 0.7
    top_p: float = 1.0
    system: Optional[str] = None


@dataclass
class ExportResult:
    out: Path
    to: str
    checkpoint: str
    name: str
    verification: dict
    seconds: dict = field(default_factory=dict)   # per stage
    files: list[str] = field(default_factory=list)

    @property
    def verified(self) -> bool:
        return all(check.get("equal", True) for check in self.verification.values()
                   if isinstance(check, dict) and not check.get("skipped"))

    def to_json(self) -> dict:
        return {"out": str(self.out), "to": self.to, "checkpoint": self.checkpoint, "name": self.name,
                "verified": self.verified, "verification": self.verification,
                "seconds": self.seconds, "files": self.files}


@dataclass
class _Plan:
    run: Optional[RunDirectory]         # None: a model exported as it is, with no adapter
    args: dict
    base_dir: Path
    adapter: Optional[AdapterRef]
    label: str
    out: Path
    name: str
    val_loss: Optional[float]


def _quiet(message: str, fraction: Optional[float] = None) -> None:
    pass


def export_command(run: Path, to: str, out: Path, checkpoint: Optional[str] = None,
                   name: Optional[str] = None, dequantize: bool = False) -> list[str]:
    """``tunedeck export … --json`` as a child process: stages on its stderr, the report on stdout."""
    import sys

    # Cancelling interrupts the child (SIGINT), which then removes its scratch folder. An app
    # started with SIGINT ignored (nohup, a background job of a script) passes that on: the child
    # takes Python's own handler back first, or the cancel would be ignored until the kill.
    command = [sys.executable, "-c", "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
               "from tunedeck.core.cli import main; sys.exit(main())",
               "export", str(run), "--to", to, "--out", str(out), "--json"]
    if checkpoint is not None:
        command += ["--checkpoint", checkpoint]
    if name:
        command += ["--name", name]
    if dequantize:
        command.append("--dequantize")
    return command


def plan_export(request: ExportRequest) -> _Plan:
    """Everything that can be refused is refused here, before any model is loaded."""
    from ..checkpoints import run_or_model

    if request.to not in FORMATS:
        raise BadInput(f"--to: one of {', '.join(FORMATS)} (got {request.to!r})")
    if request.gguf_type not in GGUF_TYPES:
        raise BadInput(f"--gguf-type: one of {', '.join(GGUF_TYPES)} (got {request.gguf_type!r})")
    if request.prompts < 1:
        raise BadInput(f"--verify-prompts: must be at least 1 (got {request.prompts})")
    choice = run_or_model(request.run, request.checkpoint)
    run, adapter, checkpoint, base_dir, label = (choice.run, choice.adapter, choice.checkpoint,
                                                 choice.model_dir, choice.label)
    args = choice.args or {}
    # A run's exports live in the run; a model's (the demo, an earlier export) where the user is.
    home, default_name = (run.path, f"{run.name}-{label}") if run else (Path.cwd(), base_dir.name)
    out = Path(request.out) if request.out else home / f"export-{label}-{request.to}"
    out = out.absolute()
    if out.exists() and not request.force:
        raise BadInput(f"{out}: already exists (choose another --out, or --force to replace it)")
    if not out.parent.is_dir():
        raise BadInput(f"{out.parent}: no such directory")
    name = request.name or default_name
    if request.to in ("gguf", "ollama"):
        from .gguf_file import check_gguf_support

        check_gguf_support(base_dir)
    if request.to == "ollama":
        from .ollama import chat_style

        chat_style(base_dir)
    return _Plan(run, args, base_dir, adapter, label, out, name,
                 checkpoint.val_loss if checkpoint else None)


def export(request: ExportRequest, progress: Optional[Progress] = None,
           verify: bool = True) -> ExportResult:
    """Run one export. ``verify=False`` exists for the benchmark, which times the work alone."""
    say = progress or _quiet
    plan = plan_export(request)
    _remove_abandoned(plan.out)
    scratch = plan.out.with_name(f".{plan.out.name}{_SCRATCH}{os.getpid()}")
    scratch.mkdir()
    try:
        result = _export_into(scratch, plan, request, say, verify)
        write_atomic(scratch / VERIFY_FILE, json.dumps(result.verification, indent=1) + "\n")
        result.files = sorted(p.name for p in scratch.iterdir())
        _move_into_place(scratch, plan.out)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    result.out = plan.out
    return result


def _export_into(scratch: Path, plan: _Plan, request: ExportRequest, say: Progress,
                 verify: bool) -> ExportResult:
    from .fuse import base_is_quantized, dequantize_fused, fuse_checkpoint, save_fused

    seconds: dict[str, float] = {}
    dequantize = request.dequantize or request.to != "mlx"  # GGUF is written from full precision

    def stage(name: str, message: str) -> float:
        say(f"{name}: {message}", None)
        return time.perf_counter()

    started = stage("fuse", f"{plan.adapter.label} into {plan.base_dir.name}" if plan.adapter
                    else f"{plan.base_dir.name} (no adapter)")
    fused = fuse_checkpoint(plan.base_dir, plan.adapter, dequantize)
    seconds["fuse"] = time.perf_counter() - started
    if dequantize and base_is_quantized(plan.base_dir):
        started = stage("de-quantize", "the fused model in full precision")
        dequantize_fused(fused)
        seconds["de-quantize"] = time.perf_counter() - started
    gguf_path = scratch / f"{plan.name}.gguf"
    started = stage("write", str(plan.out))
    if request.to == "mlx":
        save_fused(fused, scratch)
    else:
        from .gguf_file import write_gguf

        write_gguf(gguf_path, fused, plan.name, request.gguf_type)
    if request.to == "ollama":
        from .ollama import write_modelfile

        write_modelfile(scratch / "Modelfile", plan.out / gguf_path.name, plan.base_dir,
                        temperature=request.temperature, top_p=request.top_p,
                        num_ctx=int(plan.args.get("max_seq_length") or 2048), system=request.system)
    write_atomic(scratch / "README.md", _model_card(plan, request))
    seconds["write"] = time.perf_counter() - started
    verification: dict = {}
    if verify:
        started = stage("verify", "fused against base + adapter")
        verification = _verify(scratch, plan, request, fused, gguf_path, say, seconds)
        seconds["verify"] = time.perf_counter() - started
    return ExportResult(plan.out, request.to, plan.adapter.label if plan.adapter else "no adapter",
                        plan.name, verification, seconds)


def _verify(scratch: Path, plan: _Plan, request: ExportRequest, fused, gguf_path: Path,
            say: Progress, seconds: dict) -> dict:
    """The checks, each timed into ``seconds`` ("verify: answers", …) next to the stages."""
    from ..chat import ChatModel
    from .fuse import base_is_quantized
    from .verify import compare_answers, greedy_answer, verification_prompts

    started = time.perf_counter()
    prompts = verification_prompts(plan.args.get("data"), plan.args, request.prompts)
    reference = ChatModel(plan.base_dir, plan.adapter)
    expected = [greedy_answer(reference.model, reference.tokenizer, p) for p in prompts]
    if request.to == "mlx":
        # What was written, read back as `tunedeck chat --model DIR` will read it.
        exported = ChatModel(scratch)
        model, tokenizer = exported.model, exported.tokenizer
        requantized = base_is_quantized(scratch)
    else:
        model, tokenizer, requantized = fused.model, fused.tokenizer, False
    got = [greedy_answer(model, tokenizer, p) for p in prompts]
    result = {"answers": compare_answers(expected, got, reference.model, model, tokenizer,
                                         requantized).to_json()}
    seconds["verify: answers"] = time.perf_counter() - started
    if request.to != "mlx":
        from .gguf_file import check_gguf_file
        from .llama_check import llama_cpp_check

        say("verify: GGUF tensors and vocabulary", None)
        started = time.perf_counter()
        result.update(check_gguf_file(gguf_path, fused, prompts))
        seconds["verify: GGUF file"] = time.perf_counter() - started
        say("verify: llama.cpp's greedy answers", None)
        started = time.perf_counter()
        result["llama_cpp"] = llama_cpp_check(gguf_path, tokenizer, prompts, got)
        seconds["verify: llama.cpp"] = time.perf_counter() - started
    return result


def _model_card(plan: _Plan, request: ExportRequest) -> str:
    if plan.adapter is None:
        return (f"# {plan.name}\n\n`{plan.base_dir}` converted by tunedeck to {request.to}, no adapter.\n\n"
                f"`{VERIFY_FILE}` holds the check that this export answers like the model.\n")
    assert plan.run is not None  # an adapter is a checkpoint of a run
    lora = plan.adapter.config()
    keys = ("fine_tune_type", "num_layers", "lora_parameters", "learning_rate", "iters",
            "batch_size", "max_seq_length", "mask_prompt", "seed")
    hyper = "\n".join(f"- {k}: `{json.dumps(lora.get(k, plan.args.get(k)))}`" for k in keys
                      if lora.get(k, plan.args.get(k)) is not None)
    val = "not measured at this checkpoint" if plan.val_loss is None else f"{plan.val_loss:.4f}"
    return (f"# {plan.name}\n\n"
            f"Fine-tuned with tunedeck (mlx-lm), exported as {request.to}.\n\n"
            f"- base model: `{plan.base_dir}`\n- run: `{plan.run.path}`\n"
            f"- checkpoint: `{plan.adapter.weights.name}`\n- data: `{plan.args.get('data')}`\n"
            f"- validation loss at this checkpoint: {val}\n\n## Hyperparameters\n\n{hyper}\n\n"
            f"`{VERIFY_FILE}` holds the check that this export answers like base + adapter.\n")


def _remove_abandoned(out: Path) -> None:
    """Scratch directories of exports to ``out`` whose process is gone (killed mid-way)."""
    for path in out.parent.glob(f".{out.name}{_SCRATCH}*"):
        pid = path.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _move_into_place(scratch: Path, out: Path) -> None:
    if not out.exists():
        os.rename(scratch, out)
        return
    # --force: the old export is moved aside, and deleted only once the new one is in place.
    stale = out.with_name(f".{out.name}.replaced-{os.getpid()}")
    os.rename(out, stale)
    try:
        os.rename(scratch, out)
    except OSError as exc:
        os.rename(stale, out)
        raise WorkFailed(f"{out}: could not move the export into place ({exc})") from None
    shutil.rmtree(stale, ignore_errors=True)
