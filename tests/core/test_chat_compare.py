"""Two sides answering one prompt together, a load with progress and cancellation: the tiny model
with really trained adapters (LoRA checkpoints and a DoRA run)."""

from __future__ import annotations

import pytest

from tests.core.runhelpers import write_config
from tests.tinymodel import PERSONA_ANSWER, write_persona_dataset
from tunedeck.core.adapters import resolve_adapter
from tunedeck.core.chat import ChatModel, GenerationSettings, LoadCancelled, shares_one_model
from tunedeck.core.cli import main

GREEDY = GenerationSettings(max_tokens=16, temp=0.0)
QUESTION = [{"role": "user", "content": "who are you"}]


@pytest.fixture(scope="module")
def adapters(tmp_path_factory, tiny_model, persona_run, dora_run):
    """A LoRA run's last checkpoint, an early checkpoint of another LoRA run of the same layout
    (checkpoint 10 already answers like the last one), and the final weights of a DoRA run."""
    root = tmp_path_factory.mktemp("compare")
    data = write_persona_dataset(root / "data")
    short = write_config(root / "short.toml", tiny_model, data, iters=4, save_every=2)
    assert main(["train", str(short), "--run-dir", str(root / "short")]) == 0
    return {"early": resolve_adapter(root / "short" / "adapters" / "0000002_adapters.safetensors"),
            "late": resolve_adapter(persona_run / "adapters" / "0000100_adapters.safetensors"),
            "dora": resolve_adapter(dora_run)}


@pytest.fixture(scope="module")
def chat(tiny_model):
    return ChatModel(tiny_model)


def alone(chat, adapter) -> str:
    chat.set_adapter(adapter)
    return "".join(c.text for c in chat.stream(QUESTION, GREEDY))


def compared(chat, first, second, settings=GREEDY, cancelled=lambda: False):
    texts, reasons = ["", ""], [None, None]
    for side, chunk in chat.compare((first, second), (QUESTION, QUESTION), settings, cancelled):
        texts[side] += chunk.text
        if chunk.finished:
            reasons[side] = chunk.finish_reason
    return texts, reasons


@pytest.mark.parametrize("pair", [(None, "late"), ("late", None), ("early", "late"), (None, "dora")])
def test_each_side_answers_as_its_model_does_alone(chat, adapters, pair):
    first, second = (adapters.get(name) for name in pair)
    expected = [alone(chat, first), alone(chat, second)]
    assert expected[0] != expected[1]  # otherwise the comparison proves nothing
    texts, reasons = compared(chat, first, second)
    assert texts == expected
    assert None not in reasons


def test_lora_sides_share_one_model_and_dora_gets_a_second(adapters):
    assert shares_one_model(None, adapters["late"])
    assert shares_one_model(adapters["early"], adapters["late"])
    assert not shares_one_model(adapters["late"], adapters["dora"])


def test_the_model_keeps_the_first_sides_adapter_afterwards(chat, adapters):
    compared(chat, adapters["late"], None)
    assert chat.adapter == adapters["late"]
    assert "".join(c.text for c in chat.stream(QUESTION, GREEDY)).startswith(PERSONA_ANSWER[:20])
    compared(chat, None, adapters["late"])
    assert chat.adapter is None
    assert PERSONA_ANSWER[:20] not in "".join(c.text for c in chat.stream(QUESTION, GREEDY))


def test_a_cancelled_comparison_ends_both_sides(chat, adapters):
    asked = []

    def cancelled():
        asked.append(1)
        return len(asked) > 4

    long = GenerationSettings(max_tokens=200, temp=0.0)
    texts, reasons = compared(chat, None, adapters["late"], long, cancelled)
    assert reasons == ["cancelled", "cancelled"]


def test_a_load_reports_progress_and_can_be_cancelled(tiny_model):
    said = []
    ChatModel(tiny_model, progress=lambda message, fraction=None: said.append((message, fraction)))
    assert said[0][0] == "importing mlx-lm"
    assert said[-1][1] == 1.0
    with pytest.raises(LoadCancelled):
        ChatModel(tiny_model, cancelled=lambda: True)


def in_a_thread(work):
    import threading

    result = {}
    thread = threading.Thread(target=lambda: result.update(value=work()))
    thread.start()
    thread.join()
    return result["value"]


def test_a_model_prepared_in_one_thread_answers_in_another(tiny_model, adapters):
    # The app loads, switches and compares in one worker thread and answers in the next one.
    chat = in_a_thread(lambda: ChatModel(tiny_model, adapters["late"]))
    assert "".join(c.text for c in chat.stream(QUESTION, GREEDY)).startswith(PERSONA_ANSWER[:20])
    in_a_thread(lambda: compared(chat, None, adapters["late"]))
    in_a_thread(lambda: chat.set_adapter(adapters["early"]))
    assert "".join(c.text for c in chat.stream(QUESTION, GREEDY)) == alone(chat, adapters["early"])
