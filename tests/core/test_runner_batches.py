"""The runner's batches: mlx-lm's own order, replayable, and no cost per batch beyond mlx-lm's."""

from __future__ import annotations

import numpy as np
import pytest

from tunedeck.core.resumable_loop import DeterministicBatches

# 50 rows of 1..13 tokens (CacheDataset's (tokens, offset) rows): 12 batches of 4 an epoch.
ROWS = [([i % 7 + 1] * (1 + i % 13), 0) for i in range(50)]


def _mlx_lm_order(seed: int, count: int, loop: bool = True) -> list:
    """What mlx-lm's iterate_batches gives with numpy's global generator, all to itself."""
    from mlx_lm.tuner.trainer import iterate_batches

    batches = iterate_batches(dataset=ROWS, batch_size=4, max_seq_length=64, loop=loop, seed=seed)
    return [batch for _, batch in zip(range(count), batches)]


def _same(a: list, b: list) -> bool:
    return len(a) == len(b) and all((x[0] == y[0]).all() and (x[1] == y[1]).all()
                                    for x, y in zip(a, b))


@pytest.fixture
def no_global_state_swaps(monkeypatch):
    """Saving and restoring numpy's global generator around each batch cost ~0.6 ms a batch
    (1.5% of a step of the tiny model): the batches must not need it."""
    def refuse(*_):
        raise AssertionError("numpy's global generator state saved or restored for a batch")

    monkeypatch.setattr(np.random, "get_state", refuse)
    monkeypatch.setattr(np.random, "set_state", refuse)


def test_training_batches_are_mlx_lms_order_over_epochs_and_leave_numpys_generator_alone(
        no_global_state_swaps):
    np.random.seed(12345)
    before = np.random.random_sample()  # where the global stream is; drawn again below
    np.random.seed(12345)
    stream = DeterministicBatches(3, 1, lambda done: None, lambda **_: False)(ROWS, 4, 64, loop=True)
    ours = [next(stream) for _ in range(40)]  # three epochs and more

    assert np.random.random_sample() == before  # nothing drew from it meanwhile
    assert _same(ours, _mlx_lm_order(3, 40))


def test_a_resumed_stream_continues_the_straight_one(no_global_state_swaps):
    straight = DeterministicBatches(3, 1, lambda done: None, lambda **_: False)(ROWS, 4, 64, loop=True)
    first_30 = [next(straight) for _ in range(30)]
    resumed = DeterministicBatches(3, 18, lambda done: None, lambda **_: False)(ROWS, 4, 64, loop=True)

    assert _same([next(resumed) for _ in range(13)], first_30[17:])


def test_every_validation_pass_is_the_same_batches(no_global_state_swaps):
    batches = DeterministicBatches(3, 1, lambda done: None, lambda **_: False)
    first, second = list(batches(ROWS, 4, 64)), list(batches(ROWS, 4, 64))

    assert _same(first, second) and _same(first, _mlx_lm_order(3, 100, loop=False))
