"""Saving over the user's own TOML: edited in place, never damaged, never overwritten unseen."""

from __future__ import annotations

import dataclasses
import difflib

import pytest

from tunedeck.core.config import FileChanged, LrSchedule, TrainConfig
from tunedeck.core.errors import BadInput

# A project file as people write them: comments above and beside keys, their own spellings
# (6e-4), tables, keys that repeat a default.
DEMO_TOML = """\
# The demo project: teach a small model to answer as a pirate ship's cook.
#
# Sized for a slow machine.

name = "demo"
model = "demo"
data = "data"
fine_tune_type = "lora"
# Only the top layers get adapters.
num_layers = 4
batch_size = 1
iters = 20
# Validation on one example, so its pauses stay short.
val_batches = 1
steps_per_eval = 10
save_every = 5
max_seq_length = 256
mask_prompt = true
seed = 0
grad_checkpoint = false
learning_rate = 6e-4

[lora_parameters]
rank = 8
scale = 20.0
dropout = 0.0

# Warmed up, then decayed.
[lr_schedule]
name = "cosine_decay"
arguments = [6e-4, 18, 6e-5]
warmup = 2
warmup_init = 6e-5
"""


def changed_lines(before: str, after: str) -> list[str]:
    return [line for line in difflib.unified_diff(before.splitlines(), after.splitlines(),
                                                  lineterm="", n=0)
            if line[:1] in "+-" and not line.startswith(("+++", "---"))]


def test_saving_what_was_loaded_gives_the_same_file_byte_for_byte(tmp_path):
    path = tmp_path / "tunedeck.toml"
    path.write_text(DEMO_TOML)
    config = TrainConfig.from_toml(path)
    assert config.write_toml(path, loaded_text=DEMO_TOML) == DEMO_TOML
    assert path.read_text() == DEMO_TOML


def test_one_changed_value_changes_one_line_and_keeps_every_comment(tmp_path):
    path = tmp_path / "tunedeck.toml"
    path.write_text(DEMO_TOML)
    config = dataclasses.replace(TrainConfig.from_toml(path), iters=35)
    config.write_toml(path, loaded_text=DEMO_TOML)
    assert changed_lines(DEMO_TOML, path.read_text()) == ["-iters = 20", "+iters = 35"]
    assert 'model = "demo"' in path.read_text() and 'data = "data"' in path.read_text()


def test_a_value_in_a_table_keeps_its_trailing_comment_and_the_others_their_spelling():
    text = ('model = "m"  # my model\ndata = "d"\niters = 10\nlearning_rate = 6e-4\n'
            'clear_cache_threshold = "2GB"\n\n[lora_parameters]\nrank = 8  # small\n'
            'dropout = 0.0\n')
    config = TrainConfig.from_toml_text(text)
    edited = dataclasses.replace(
        config, lora_parameters=dataclasses.replace(config.lora_parameters, rank=16)).edit_toml(text)
    assert changed_lines(text, edited) == ["-rank = 8  # small", "+rank = 16  # small"]


def test_switching_iters_to_epochs_removes_iters_and_adds_epochs():
    text = '# mine\nmodel = "m"\ndata = "d"\niters = 10\n'
    edited = dataclasses.replace(TrainConfig.from_toml_text(text), iters=None, epochs=2.0).edit_toml(text)
    assert edited == '# mine\nmodel = "m"\ndata = "d"\nepochs = 2.0\n'


def test_unset_values_and_tables_go_new_ones_come_only_when_they_differ_from_the_defaults():
    config = TrainConfig.from_toml_text(DEMO_TOML)
    edited = dataclasses.replace(config, lr_schedule=None, batch_size=2, max_seq_length=2048,
                                 test=False, report_to=None).edit_toml(DEMO_TOML)
    # The user's comment above the removed table is theirs: it stays.
    assert changed_lines(DEMO_TOML, edited) == [
        "-batch_size = 1", "+batch_size = 2", "-max_seq_length = 256", "+max_seq_length = 2048",
        "-[lr_schedule]", '-name = "cosine_decay"', "-arguments = [6e-4, 18, 6e-5]",
        "-warmup = 2", "-warmup_init = 6e-5"]
    again = TrainConfig.from_toml_text(edited)
    assert again == dataclasses.replace(config, lr_schedule=None, batch_size=2, max_seq_length=2048)
    added = dataclasses.replace(config, test=True, grad_checkpoint=False).edit_toml(DEMO_TOML)
    assert changed_lines(DEMO_TOML, added) == ["+test = true"]


def test_a_new_schedule_and_hf_dataset_are_added_as_tables():
    text = 'model = "m"\ndata = "d"\niters = 10\n'
    config = dataclasses.replace(TrainConfig.from_toml_text(text),
                                 lr_schedule=LrSchedule("cosine_decay", [1e-4, 10]),
                                 hf_dataset=[{"path": "user/ds"}])
    edited = config.edit_toml(text)
    assert edited.startswith(text)
    assert TrainConfig.from_toml_text(edited) == config


def test_a_file_changed_on_disk_since_it_was_loaded_is_not_overwritten_unasked(tmp_path):
    path = tmp_path / "tunedeck.toml"
    path.write_text(DEMO_TOML)
    config = dataclasses.replace(TrainConfig.from_toml(path), iters=35)
    someone_else = DEMO_TOML.replace("seed = 0", "seed = 3  # changed in an editor")
    path.write_text(someone_else)
    with pytest.raises(FileChanged, match="changed on disk since it was loaded") as info:
        config.write_toml(path, loaded_text=DEMO_TOML)
    assert not info.value.never_loaded
    assert path.read_text() == someone_else
    # Once the user agrees, the form's values go in; the editor's comment stays.
    config.write_toml(path, loaded_text=DEMO_TOML, overwrite=True)
    assert changed_lines(someone_else, path.read_text()) == [
        "-iters = 20", "+iters = 35", "-seed = 3  # changed in an editor", "+seed = 0  # changed in an editor"]


def test_an_existing_file_never_loaded_is_not_overwritten_unasked(tmp_path):
    path = tmp_path / "other.toml"
    path.write_text('model = "m"\ndata = "d"\niters = 3\n')
    with pytest.raises(FileChanged, match="was not the one loaded") as info:
        TrainConfig().write_toml(path)
    assert info.value.never_loaded and path.read_text() == 'model = "m"\ndata = "d"\niters = 3\n'


def test_a_toml_that_does_not_parse_is_never_replaced(tmp_path):
    path = tmp_path / "tunedeck.toml"
    broken = 'model = "demo"\niters = = 3\n'
    path.write_text(broken)
    with pytest.raises(BadInput, match=r"tunedeck.toml:2: invalid TOML, so it is not replaced"):
        TrainConfig().write_toml(path, overwrite=True)
    assert path.read_text() == broken


def test_a_new_file_is_written_whole_and_atomically(tmp_path):
    (tmp_path / "project").mkdir()
    path = tmp_path / "project" / "new.toml"
    text = TrainConfig(model="demo", data="data", iters=5).write_toml(path)
    assert path.read_text() == text and TrainConfig.from_toml(path).iters == 5
    assert sorted(p.name for p in path.parent.iterdir()) == ["new.toml"]


def test_every_option_can_be_edited_in_and_out_of_a_file():
    from tests.core.test_config import everything

    demo = TrainConfig.from_toml_text(DEMO_TOML)
    for config in (everything(), everything(iters=None, epochs=2.5)):
        edited = config.edit_toml(DEMO_TOML)
        assert TrainConfig.from_toml_text(edited) == config
        assert TrainConfig.from_toml_text(demo.edit_toml(edited)) == demo
        assert edited.startswith("# The demo project")  # the user's comments are still there
