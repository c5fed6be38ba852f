"""Chat speed with an adapter: tunedeck's ChatModel.stream vs mlx-lm's own stream_generate.

The same base model, adapter, prompt (through the chat template) and greedy sampling on both
sides; each side loads its model its own way (tunedeck's ChatModel; mlx_lm.load with
adapter_path). The two answers are generated in turns, a token each, and every step of each is
timed, so noise from other work on the machine falls on both alike; a side's speed is its
tokens after the first (which also reads the prompt) over the time spent in its steps. Median
of the repeats. Budget: tunedeck / mlx-lm >= 0.95.

Models: the tiny test model with a LoRA adapter trained here for a few iterations (few enough
that it does not stop early: the answer runs to max tokens), and the demo model (SmolLM2-135M)
when it is built under TUNEDECK_HOME, with an untrained rank-8 LoRA adapter on every projection
of every layer (speed does not depend on the values; lora_b is random so it is not a no-op).

    .venv/bin/python bench/bench_chat.py [--repeats 5] [--tiny-tokens 512] [--demo-tokens 128]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.conftest import TINY_LORA  # noqa: E402
from tests.tinymodel import build_tiny_model, write_persona_dataset  # noqa: E402

BIN = Path(sys.executable).parent
MESSAGES = [{"role": "user", "content": "who are you"}]


def step_times(streams: list) -> list[list[float]]:
    """Advance the streams in turn, one token each, timing every step of each: machine noise
    (this may be a shared machine) then falls on both sides alike."""
    times: list[list[float]] = [[] for _ in streams]
    going = list(range(len(streams)))
    while going:
        for side in list(going):
            start = time.perf_counter()
            try:
                next(streams[side])
            except StopIteration:
                going.remove(side)
                continue
            times[side].append(time.perf_counter() - start)
    return times


def rate(times: list[float]) -> float:
    """Tokens per second after the first token (which also processes the prompt)."""
    return (len(times) - 1) / sum(times[1:])


def train_tiny_adapter(tmp: Path) -> tuple[Path, Path]:
    import tomli_w

    model = build_tiny_model(tmp / "model")
    data = write_persona_dataset(tmp / "data")
    config = {"model": str(model), "data": str(data), "num_layers": 2, "batch_size": 4, "iters": 4,
              "learning_rate": 1e-4, "steps_per_report": 2, "steps_per_eval": 10**6, "save_every": 2,
              "val_batches": 1, "lora_parameters": dict(TINY_LORA)}
    (tmp / "tiny.toml").write_text(tomli_w.dumps(config))
    subprocess.run([str(BIN / "tunedeck"), "train", str(tmp / "tiny.toml"), "--run-dir", str(tmp / "run")],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return model, tmp / "run" / "adapters"


def untrained_adapter(model_dir: Path, out: Path) -> Path:
    """A rank-8 LoRA adapter on every projection of every layer, in mlx-lm's adapter format."""
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm import load
    from mlx_lm.tuner.utils import linear_to_lora_layers

    model, _ = load(str(model_dir))
    layers = json.loads((model_dir / "config.json").read_text())["num_hidden_layers"]
    lora = {"rank": 8, "scale": 20.0, "dropout": 0.0, "keys": TINY_LORA["keys"]}
    linear_to_lora_layers(model, layers, lora)
    weights = {name: (mx.random.normal(a.shape) * 0.01 if name.endswith("lora_b") else a)
               for name, a in tree_flatten(model.parameters()) if name.endswith(("lora_a", "lora_b"))}
    out.mkdir(parents=True, exist_ok=True)
    mx.save_safetensors(str(out / "adapters.safetensors"), weights)
    (out / "adapter_config.json").write_text(json.dumps(
        {"fine_tune_type": "lora", "num_layers": layers, "lora_parameters": lora}))
    return out


def compare(model_dir: Path, adapter_dir: Path, max_tokens: int, repeats: int) -> dict:
    from mlx_lm import load, stream_generate
    from mlx_lm.sample_utils import make_sampler

    from tunedeck.core.chat import ChatModel, GenerationSettings

    ours = ChatModel(model_dir, adapter_dir)
    plain, tokenizer = load(str(model_dir), adapter_path=str(adapter_dir))
    prompt = tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True)
    assert list(prompt) == ours.prompt_tokens(MESSAGES)
    settings = GenerationSettings(max_tokens=max_tokens, temp=0.0)

    def streams():
        return [stream_generate(plain, tokenizer, prompt, max_tokens=max_tokens,
                                sampler=make_sampler(temp=0.0)),
                ours.stream(MESSAGES, settings)]

    step_times(streams())  # warm-up: kernels, caches
    rates = {"plain": [], "ours": []}
    for _ in range(repeats):
        plain_times, our_times = step_times(streams())
        rates["plain"].append(rate(plain_times))
        rates["ours"].append(rate(our_times))
    return {"tokens": (len(plain_times), len(our_times)), "plain": statistics.median(rates["plain"]),
            "ours": statistics.median(rates["ours"])}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--tiny-tokens", type=int, default=512)
    ap.add_argument("--demo-tokens", type=int, default=128)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from tunedeck.core.demo_model import demo_model_dir, fastest_form, is_demo_model_built

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model, adapter = train_tiny_adapter(tmp)
        rows.append(("tiny model, LoRA adapter trained 4 iterations",
                     compare(model, adapter, args.tiny_tokens, args.repeats)))
        demo = demo_model_dir()
        if is_demo_model_built(demo):
            adapter = untrained_adapter(demo, tmp / "demo-adapter")
            rows.append((f"demo model (SmolLM2-135M, {fastest_form()}), LoRA rank 8 on all projections",
                         compare(demo, adapter, args.demo_tokens, args.repeats)))
        else:
            print(f"(demo model not built under {demo.parent.parent}: skipped; `tunedeck demo` builds it)")
    print("| model and adapter | tokens | mlx_lm stream_generate tok/s | tunedeck ChatModel.stream tok/s "
          "| ratio | budget |")
    print("|---|---|---|---|---|---|")
    for what, r in rows:
        tokens = "/".join(str(t) for t in sorted(set(r["tokens"])))
        print(f"| {what} | {tokens} | {r['plain']:,.1f} | {r['ours']:,.1f} | {r['ours'] / r['plain']:.3f} "
              f"| >= 0.95 |")
    print(f"\nGreedy, one prompt through the chat template; both answers generated in turns, each "
          f"step timed; median of {args.repeats} repeats after a warm-up.")


if __name__ == "__main__":
    main()
