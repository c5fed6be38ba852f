"""The health monitor on real training runs of the tiny model, through `tunedeck train`.

The runner's monitor writes its findings into metrics.jsonl as the run goes; each test also feeds
the recorded events through a fresh monitor, as `metrics` and `watch` do on a finished run or a
foreign log, and both must agree.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from tests.core.runhelpers import write_config
from tests.tinymodel import _WORDS, QUESTIONS
from tunedeck.core.cli import main
from tunedeck.core.events import Health, Train, Val, read_events
from tunedeck.core.checkpoints import checkpoint_index
from tunedeck.core.health import DivergingOffer, check_events, model_vocab_size
from tunedeck.core.rundir import RunDirectory


def _train(tmp_path: Path, model: Path, data: Path, **config) -> list:
    cfg = write_config(tmp_path / "cfg.toml", model, data, **config)
    run_dir = tmp_path / "run"
    assert main(["train", str(cfg), "--run-dir", str(run_dir)]) == 0
    return read_events(run_dir / "metrics.jsonl")


def _findings(events: list, model: Path, val_batches: int) -> list:
    """The findings of a fresh monitor over the record, checked against those the run wrote."""
    found = check_events(events, vocab_size=model_vocab_size(model), val_batches=val_batches)
    live = [e for e in events if isinstance(e, Health)]
    assert [h.to_dict() for h in live] == [h.to_dict() for h in found]
    return found


def test_a_learning_rate_of_one_diverges_and_is_named_within_two_reports(tmp_path, tiny_model, persona_data):
    events = _train(tmp_path, tiny_model, persona_data, iters=40, learning_rate=1.0)
    found = _findings(events, tiny_model, 2)

    reports = [e for e in events if isinstance(e, Train)]
    lowest = min(range(len(reports)), key=lambda k: reports[k].loss)
    # The first bad loss: the first report after the lowest that has climbed back 0.25 nats.
    first_bad = next(k for k in range(lowest + 1, len(reports))
                     if reports[k].loss >= reports[lowest].loss + 0.25)
    diverging = [h for h in found if h.issue == "diverging"]
    assert diverging, [h.to_json() for h in found]
    at = [r.iter for r in reports].index(diverging[0].iter)
    assert first_bad <= at <= first_bad + 2, (diverging[0].iter, reports[first_bad].iter)
    assert diverging[0].severity == "bad" and "ln(400)" in diverging[0].evidence
    # The advice names half the rate and a checkpoint saved before the climb.
    assert "1 → 0.5" in diverging[0].advice
    healthy = [e.iter for e in events if e.kind == "save" and e.iter <= reports[lowest].iter]
    if healthy:
        assert f"checkpoint {healthy[-1]}" in diverging[0].advice
    # A diverged run's flat loss and risen val loss are not reported as other issues.
    assert {h.issue for h in found} == {"diverging"}


def _offer(run_dir: Path):
    watch = DivergingOffer()
    for event in read_events(run_dir / "metrics.jsonl"):
        watch.observe(event)
    resumable = [c.iteration for c in checkpoint_index(RunDirectory(run_dir)) if c.resumable]
    return watch.offer(resumable)


def test_a_diverging_run_offers_half_the_rate_from_its_last_healthy_checkpoint(
        tmp_path, tiny_model, persona_data, capsys):
    import mlx.core as mx

    events = _train(tmp_path, tiny_model, persona_data, iters=40, learning_rate=1.0, save_every=5)
    run_dir = tmp_path / "run"
    offer = _offer(run_dir)
    assert offer is not None and offer.finding.issue == "diverging"
    reports = [e for e in events if isinstance(e, Train)]
    lowest = min(reports, key=lambda e: e.loss).iter
    # The newest checkpoint at or before the lowest loss, with half the rate the run had.
    assert offer.checkpoint == max(e.iter for e in events if e.kind == "save" and e.iter <= lowest)
    assert (offer.learning_rate, offer.new_learning_rate) == (1.0, 0.5)

    assert main(["resume", str(run_dir), "--learning-rate", "0"]) == 2
    assert "--learning-rate: must be a number above 0" in capsys.readouterr().err
    assert main(["resume", str(run_dir), "--checkpoint", str(offer.checkpoint),
                 "--learning-rate", str(offer.new_learning_rate)]) == 0
    record = read_events(run_dir / "metrics.jsonl")
    resumed = record[max(i for i, e in enumerate(record) if e.kind == "resume"):]
    assert resumed[0].iter == offer.checkpoint
    after = [e for e in resumed if isinstance(e, Train)]
    # The iteration count carried on, and every report since has the new rate...
    assert after[0].iter == offer.checkpoint + 5 and after[-1].iter == 40
    assert {e.lr for e in after} == {0.5}
    # ... which the optimizer state of the next checkpoint holds, beside a step count that
    # carried on from the checkpoint's (a fresh optimizer would be at 5).
    state = mx.load(str(run_dir / "adapters" / f"{offer.checkpoint + 5:07d}_optimizer.safetensors"))
    assert state["learning_rate"].item() == 0.5
    assert state["step"].item() == offer.checkpoint + 5
    assert "learning rate 1 → 0.5 from checkpoint" in (run_dir / "train.log").read_text()
    # The offer was about the weights the resume started again from.
    assert _offer(run_dir) is None or _offer(run_dir).learning_rate == 0.5


def write_chat_data(out: Path, splits: dict) -> Path:
    """``splits``: split name → (question, answer) pairs, written as mlx-lm chat rows."""
    out.mkdir()
    for name, pairs in splits.items():
        with open(out / f"{name}.jsonl", "w") as f:
            for question, answer in pairs:
                f.write(json.dumps({"messages": [{"role": "user", "content": question},
                                                 {"role": "assistant", "content": answer}]}) + "\n")
    return out


def _tiny_train_set(out: Path) -> Path:
    """Four examples with random answers to memorise, and a valid split of other random ones."""
    rng = random.Random(3)

    def rows(n):
        for _ in range(n):
            answer = " ".join(rng.choice(_WORDS) for _ in range(12))
            yield rng.choice(QUESTIONS), answer

    return write_chat_data(out, {"train": list(rows(4)), "valid": list(rows(8))})


def test_a_tiny_train_set_trained_too_long_overfits_and_is_named_once_val_rises(tmp_path, tiny_model):
    data = _tiny_train_set(tmp_path / "data")
    events = _train(tmp_path, tiny_model, data, iters=100, learning_rate=2e-3, batch_size=4,
                    steps_per_report=10, steps_per_eval=10, save_every=50, val_batches=-1)
    found = _findings(events, tiny_model, -1)
    overfitting = [h for h in found if h.issue == "overfitting"]
    assert overfitting, [h.to_json() for h in found]
    first = overfitting[0]
    val = {e.iter: e.loss for e in events if isinstance(e, Val)}
    train = {e.iter: e.loss for e in events if isinstance(e, Train)}
    # Not before val actually rises: at the finding, val is above its lowest so far...
    lowest_iter = min((i for i in val if i < first.iter), key=val.get)
    assert val[first.iter] > val[lowest_iter]
    # ... while train has kept falling since that lowest val.
    assert train[first.iter] < train[min(i for i in train if i >= lowest_iter)]
    assert "val loss" in first.evidence and "train loss fell" in first.evidence


def test_a_normal_run_raises_no_finding(tmp_path, tiny_model, persona_data):
    events = _train(tmp_path, tiny_model, persona_data, iters=60)
    assert _findings(events, tiny_model, 2) == []
    assert _offer(tmp_path / "run") is None
    # It did learn: the monitor had something to watch.
    losses = [e.loss for e in events if isinstance(e, Train)]
    assert losses[-1] < losses[0] / 2


def test_the_offer_taken_while_the_run_goes_on_stops_it_and_resumes_with_half_the_rate(
        tmp_path, tiny_model, persona_data):
    from tests.core.runhelpers import wait_for
    from tunedeck.core.runs import resume_with_new_rate, stop_run

    cfg = write_config(tmp_path / "cfg.toml", tiny_model, persona_data, iters=5000,
                       learning_rate=1.0, save_every=5, steps_per_eval=1000)
    run_dir = tmp_path / "run"
    assert main(["train", str(cfg), "--run-dir", str(run_dir), "--detach"]) == 0
    run = RunDirectory(run_dir)
    offer = wait_for(lambda: _offer(run_dir), timeout=300, what="the diverging offer")
    assert run.state() == "running"

    resume_with_new_rate(run, offer.checkpoint, offer.new_learning_rate)

    def resumed_reports():
        record = read_events(run_dir / "metrics.jsonl")
        starts = [i for i, e in enumerate(record) if e.kind == "resume"]
        return starts and [e for e in record[starts[-1]:] if isinstance(e, Train)]

    after = wait_for(resumed_reports, timeout=300, what="a report of the resumed run")
    stop_run(run)
    record = read_events(run_dir / "metrics.jsonl")
    # The first run was stopped (not left training beside the resumed one), then resumed.
    ends = [e.state for e in record if e.kind == "end"]
    assert ends[0] == "stopped"
    assert [e.iter for e in record if e.kind == "resume"] == [offer.checkpoint]
    assert after[0].iter == offer.checkpoint + 5 and after[0].lr == 0.5
