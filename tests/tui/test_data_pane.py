"""The Data pane: rows of files of any size, what the model will see of them, the validation
report, token statistics and conversions, on real files and the tiny model's real tokenizer."""

import json

from textual.widgets import Select

from tests.tinymodel import PERSONA_ANSWER
from tunedeck.core.data.tokens import render_row
from tunedeck.tui.panes.data.convert_form import ConvertForm
from tunedeck.tui.panes.data.row_list import RowList
from tunedeck.tui.panes.data import DataPane
from tunedeck.tui.panes.data.check_view import ValidationReport
from tunedeck.tui.panes.data.content import CUT, TRAINED
from tunedeck.tui.panes.data.stats_view import TokenStatsView
from tunedeck.tui.panes.data.text_panel import TextPanel

from .harness import PaneHarness, wait_until
from .projects import write_project

HOSTILE = ["[bold red]x[/]", "[link=file:///etc/passwd]x[/link]", "\x1b[2J\x1b]0;pwned\x07"]


def chat(question: str, answer: str = PERSONA_ANSWER) -> str:
    return json.dumps({"messages": [{"role": "user", "content": question},
                                    {"role": "assistant", "content": answer}]})


def write_rows(project, lines, name="train.jsonl"):
    (project / "data" / name).write_text("".join(line + "\n" for line in lines))


def questions_pane(tmp_path, tiny_model, count: int) -> PaneHarness:
    """The Data pane on a project whose train.jsonl holds ``count`` numbered chat rows."""
    project = write_project(tmp_path / "project", tiny_model)
    write_rows(project, [chat(f"question number {i}") for i in range(1, count + 1)])
    return PaneHarness(lambda: DataPane(project))


def list_text(rows: RowList) -> str:
    return "\n".join(rows.render_line(y).text for y in range(rows.size.height))


def panel(app, view: str) -> TextPanel:
    return app.query_one(f"#data-{view}", TextPanel)


async def open_pane(pilot):
    pane = pilot.app.query_one(DataPane)
    rows = pane.query_one(RowList)
    await wait_until(pilot, lambda: pane.row is not None, what="the first row")
    pane.focus_main()  # as the App does when it shows the pane
    return pane, rows


async def test_first_rows_show_while_a_big_file_is_still_being_indexed(tmp_path, tiny_model):
    project = write_project(tmp_path / "project", tiny_model)
    # About 100 MB: indexing it takes a tenth of a second or more, the first rows a millisecond.
    big = tmp_path / "big.jsonl"
    pad = "x" * 200
    count = 400_000
    with open(big, "w") as f:
        for start in range(0, count, 50_000):
            f.write("".join(json.dumps({"text": f"row {i + 1} {pad}"}) + "\n"
                            for i in range(start, start + 50_000)))
    app = PaneHarness(lambda: DataPane(project))
    async with app.run_test(size=(120, 30)) as pilot:
        pane, rows = await open_pane(pilot)
        pane.open_file(big)  # what the open key (o) does with the path typed
        # The first rows are in the list and the index is still going: they did not wait.
        assert rows.row_count > 0
        assert not pane.rows.done
        assert "indexing" in str(pane.query_one("#data-summary").visual)
        await pilot.pause()
        assert "row 1 xxx" in list_text(rows)

        await wait_until(pilot, lambda: pane.rows.done, what="the whole index")
        await wait_until(pilot, lambda: rows.row_count == count, what="every row in the list")
        await pilot.press("end")
        assert rows.cursor == count - 1
        assert f"row {count} " in panel(app, "raw").shown_text
        summary = pane.query_one("#data-summary")
        await wait_until(pilot, lambda: f"{count:,} lines" in str(summary.visual),
                         what="the line count")


async def test_go_to_a_line_and_page_through_rows(tmp_path, tiny_model):
    app = questions_pane(tmp_path, tiny_model, 5000)
    async with app.run_test(size=(100, 30)) as pilot:
        pane, rows = await open_pane(pilot)
        await pilot.press("g", *"4321", "enter")
        assert rows.cursor == 4320
        assert "question number 4321" in panel(app, "raw").shown_text
        assert "4321 chat" in list_text(rows)  # scrolled into view
        await pilot.press("pagedown")
        assert rows.cursor > 4321
        await pilot.press("home")
        assert rows.cursor == 0
        assert "question number 1\"" in panel(app, "raw").shown_text
        # A line past the end is refused with a message, the cursor stays.
        await pilot.press("g", *"9999", "enter")
        assert rows.cursor == 0


async def test_a_line_number_typed_faster_than_the_app_keeps_up_loses_no_digit(tmp_path, tiny_model):
    """Keys all queued before the first is handled (fast typing on a busy machine): the go-to key
    bubbled up to the pane's binding after the next digit had reached the list and was lost."""
    from textual import events

    app = questions_pane(tmp_path, tiny_model, 5000)
    async with app.run_test(size=(100, 30)) as pilot:
        pane, rows = await open_pane(pilot)
        await wait_until(pilot, lambda: rows.has_focus, what="the row list's focus")
        for key in ("g", *"4321", "enter"):
            app.post_message(events.Key(key, key if len(key) == 1 else None))
        await wait_until(pilot, lambda: rows.cursor != 0, what="the jump")
        assert rows.cursor == 4320


async def test_the_go_to_key_with_no_file_open_does_nothing(tmp_path, tiny_model):
    project = write_project(tmp_path / "project", tiny_model)
    for path in (project / "data").glob("*.jsonl"):
        path.unlink()
    app = PaneHarness(lambda: DataPane(project))
    async with app.run_test(size=(100, 30)) as pilot:
        pane = app.query_one(DataPane)
        rows = pane.query_one(RowList)
        rows.focus()
        await wait_until(pilot, lambda: rows.has_focus, what="the row list's focus")
        await pilot.press("g", "1", "enter")
        assert pane.rows is None and rows.typed is None
        assert "no data files" in str(pane.query_one("#data-summary").visual)


async def test_raw_template_and_tokens_of_a_chat_row_with_mask_prompt(tmp_path, tiny_model):
    project = write_project(tmp_path / "project", tiny_model, mask_prompt=True)
    write_rows(project, [chat("where is paris")])
    app = PaneHarness(lambda: DataPane(project))
    async with app.run_test(size=(120, 36)) as pilot:
        pane, rows = await open_pane(pilot)
        raw = panel(app, "raw").shown_text
        assert '"role": "user"' in raw and '"content": "where is paris"' in raw
        assert "chat (messages)" in raw

        await pilot.press("t")
        template = panel(app, "template")
        await wait_until(pilot, lambda: "<|im_start|>" in template.shown_text, timeout=120,
                         what="the rendered template")
        assert ("<|im_start|>user\nwhere is paris<|im_end|>\n<|im_start|>assistant\n"
                f"{PERSONA_ANSWER}<|im_end|>\n") in template.shown_text

        await pilot.press("k")
        tokens = panel(app, "tokens")
        await wait_until(pilot, lambda: "carry loss" in tokens.shown_text, what="the tokens")
        body = tokens.body
        trained = "".join(body.plain[s.start:s.end] for s in body.spans if s.style in TRAINED)
        # With mask_prompt, exactly the answer (and the turn's end) carries loss.
        assert trained == f"{PERSONA_ANSWER}<|im_end|>↵\n"
        rendered = render_row(json.loads(chat("where is paris")), pane.tokenizer,
                              mask_prompt=True, max_seq_length=128)
        counts = f"{len(rendered.token_ids)} tokens, {rendered.loss_tokens} carry loss"
        assert f"train.jsonl:1 · {counts}" in tokens.shown_text
        assert "fits max_seq_length 128" in tokens.shown_text
        assert "carries loss" in tokens.shown_text and "prompt: no loss" in tokens.shown_text

        await pilot.press("m")  # mask_prompt off: everything but the first token trains
        await wait_until(pilot, lambda: "first token: no loss" in tokens.shown_text,
                         what="the tokens without mask_prompt")
        body = tokens.body
        trained = "".join(body.plain[s.start:s.end] for s in body.spans if s.style in TRAINED)
        assert trained.startswith("user↵\nwhere is paris")


async def test_a_row_longer_than_max_seq_length_is_shown_truncated(tmp_path, tiny_model):
    project = write_project(tmp_path / "project", tiny_model, max_seq_length=16)
    write_rows(project, [chat("where is paris and what is the name of the sky")])
    app = PaneHarness(lambda: DataPane(project))
    async with app.run_test(size=(120, 36)) as pilot:
        await open_pane(pilot)
        await pilot.press("k")
        tokens = panel(app, "tokens")
        await wait_until(pilot, lambda: "carry loss" in tokens.shown_text, timeout=120,
                         what="the tokens")
        assert "over max_seq_length by" in tokens.shown_text
        assert "mlx-lm truncates it" in tokens.shown_text
        body = tokens.body
        cut = "".join(body.plain[s.start:s.end] for s in body.spans if s.style in CUT)
        assert cut.endswith("<|im_end|>↵\n")  # the end of the answer is cut off

        await pilot.press("t")  # the template shows the cut-off end in the same colour
        template = panel(app, "template")
        await wait_until(pilot, lambda: "<|im_start|>" in template.shown_text, what="template")
        body = template.body
        cut_text = "".join(body.plain[s.start:s.end] for s in body.spans if s.style == CUT[0])
        assert cut_text == cut.replace("↵", "")


async def test_the_validation_report_jumps_to_a_truncated_line_and_good_rows_stay(
        tmp_path, tiny_model):
    project = write_project(tmp_path / "project", tiny_model)
    good = [chat(f"good question {i}") for i in range(1, 7)]
    truncated = chat("cut short")[:30]
    write_rows(project, good[:2] + [truncated] + good[2:])
    app = PaneHarness(lambda: DataPane(project))
    async with app.run_test(size=(120, 36)) as pilot:
        pane, rows = await open_pane(pilot)
        report = pane.query_one(ValidationReport)
        await wait_until(pilot, lambda: pane.report is not None, what="the validation report")
        assert "Problems 1" in str(pane.query_one("#data-views-bar").visual)

        await pilot.press("p")
        problems = report.query_one("#data-problem-list")
        assert problems.has_focus
        first = str(problems.get_option_at_index(0).prompt)
        assert first.startswith("train.jsonl:3: invalid JSON")
        assert "truncated" in first
        assert report.task_line.text.endswith("7 rows · 6 valid · 1 error")

        await pilot.press("enter")
        assert rows.cursor == 2
        assert pane.view == "raw"
        raw = panel(app, "raw").shown_text
        assert "train.jsonl:3 · not a record" in raw
        assert "✗ invalid JSON" in raw
        assert truncated in raw
        shown = list_text(rows)
        assert rows.row_count == 7
        for i in range(1, 7):  # every good row is still in the list
            assert f"good question {i}" in shown
        assert "✗ invalid JSON" in shown


async def test_progress_of_a_task_whose_view_is_hidden_asks_for_no_layout(
        tmp_path, tiny_model, layouts):
    """The check reports ten times a second while the rows are looked at, its view hidden: a
    layout of the whole screen for each report made a jump to a line slow (issue 9)."""

    project = write_project(tmp_path / "project", tiny_model)
    app = PaneHarness(lambda: DataPane(project))
    async with app.run_test(size=(160, 48)) as pilot:
        pane, rows = await open_pane(pilot)
        await wait_until(pilot, lambda: pane.report is not None, what="the validation report")
        line = pane.query_one(ValidationReport).task_line
        line.progress("checking train.jsonl", 0.0)  # from finished to running: restyled once
        # Until the screen is still (on a busy machine the first frames may still be coming).
        for _ in range(1000):
            layouts.clear()
            await pilot.pause()
            if not layouts:
                break
        for i in range(1, 6):
            line.progress(f"checking train.jsonl: {i * 1000:,} lines, a longer label each "
                          f"time {'.' * 20 * i}", i / 10)
            await pilot.pause()
        assert layouts == []
        await pilot.press("p")  # shown, the line says where the task is
        await wait_until(pilot, lambda: line.size.width > 0, what="the Problems view")
        assert line.text.startswith("checking train.jsonl: 5,000 lines")


async def test_a_jump_to_a_line_asks_for_no_layout_of_the_screen(tmp_path, tiny_model, layouts):
    """The row shown is taller than its view before and after the jump, and the line is on the
    list's screen already: nothing changes size, so nothing is laid out again. A layout for the
    file summary's new text and one for the row view's new height made each jump slow (issue 9)."""

    project = write_project(tmp_path / "project", tiny_model)
    turns = [{"role": role, "content": f"turn {t}"} for t in range(20) for role in ("user", "assistant")]
    write_rows(project, [json.dumps({"messages": [{"role": "user", "content": f"question number {i}"},
                                                  *turns]}) for i in range(1, 11)])
    app = PaneHarness(lambda: DataPane(project))
    async with app.run_test(size=(160, 48)) as pilot:
        pane, rows = await open_pane(pilot)
        await wait_until(pilot, lambda: pane.report is not None, what="the validation report")
        for _ in range(1000):  # until the screen is still
            layouts.clear()
            await pilot.pause()
            if not layouts:
                break
        raw = panel(app, "raw")
        assert raw.show_vertical_scrollbar  # the first row is taller than the view
        await pilot.press("g", "7", "enter")
        await pilot.pause()
        assert rows.cursor == 6 and "question number 7" in raw.shown_text
        assert raw.virtual_size.height > raw.size.height and raw.show_vertical_scrollbar
        assert layouts == []


async def test_a_cursor_move_repaints_two_lines_of_the_list(tmp_path, tiny_model, monkeypatch):
    """A move within the list's screen changes the look of two lines. Repainting the whole list
    made the pane and every container behind it draw all its lines again too: most of the frame
    of an Up key, the redraw every jump to a line also pays (issue 9)."""
    app = questions_pane(tmp_path, tiny_model, 100)
    async with app.run_test(size=(160, 48)) as pilot:
        pane, rows = await open_pane(pilot)
        await wait_until(pilot, lambda: pane.report is not None, what="the validation report")
        drawn: list = []
        render_line = RowList.render_line

        def counted(self, y):
            drawn.append(y)
            return render_line(self, y)

        monkeypatch.setattr(RowList, "render_line", counted)
        for _ in range(1000):  # until the screen is still
            drawn.clear()
            await pilot.pause()
            if not drawn:
                break
        await pilot.press("down", "down")
        await pilot.pause()
        assert rows.cursor == 2 and "question number 3" in panel(app, "raw").shown_text
        assert set(drawn) <= {0, 1, 2}, sorted(set(drawn))


async def test_the_cursor_line_follows_the_focus_and_the_theme(tmp_path, tiny_model):
    """The list keeps its styles between drawings: a change of focus or theme must still
    recolour the cursor's line."""
    from tunedeck.themes import THEMES

    app = questions_pane(tmp_path, tiny_model, 10)
    async with app.run_test(size=(160, 48)) as pilot:
        pane, rows = await open_pane(pilot)
        await wait_until(pilot, lambda: rows.has_focus, what="the list's focus")
        await pilot.pause()

        def cursor_background():
            return next(iter(rows.render_line(0))).style.bgcolor

        focused = cursor_background()
        pane.query_one("#data-raw", TextPanel).focus()
        await wait_until(pilot, lambda: cursor_background() != focused,
                         what="the blurred cursor's colour")
        blurred = cursor_background()
        rows.focus()
        await wait_until(pilot, lambda: cursor_background() == focused,
                         what="the focused cursor's colour")
        other = next(t.name for t in THEMES if t.name != app.theme)
        app.theme = other
        await wait_until(pilot, lambda: cursor_background() not in (focused, blurred),
                         what=f"the cursor's colour in {other}")


async def test_markup_and_escape_sequences_in_a_row_show_literally(tmp_path, tiny_model):
    project = write_project(tmp_path / "project", tiny_model)
    write_rows(project, [chat(text, answer="ok") for text in HOSTILE] + ["{not json"])
    app = PaneHarness(lambda: DataPane(project))
    async with app.run_test(size=(160, 30)) as pilot:
        pane, rows = await open_pane(pilot)
        await wait_until(pilot, lambda: rows.row_count == 4, what="the rows")
        shown = list_text(rows)
        assert "user: [bold red]x[/]" in shown
        assert "user: [link=file:///etc/passwd]x[/link]" in shown
        assert "user: ^[[2J^[]0;pwned^G" in shown
        assert "\x1b" not in shown
        assert "✗ invalid JSON" in shown  # a bad line is reported, the good rows still show

        assert '"content": "[bold red]x[/]"' in panel(app, "raw").shown_text
        await pilot.press("down")
        assert '"content": "[link=file:///etc/passwd]x[/link]"' in panel(app, "raw").shown_text
        await pilot.press("down", "t")
        template = panel(app, "template")
        await wait_until(pilot, lambda: "<|im_start|>" in template.shown_text, timeout=120,
                         what="the rendered template")
        assert "^[[2J^[]0;pwned^G" in template.shown_text
        await pilot.press("k")
        tokens = panel(app, "tokens")
        await wait_until(pilot, lambda: "carry loss" in tokens.shown_text, what="the tokens")
        assert "\x1b" not in tokens.shown_text and "^[" in tokens.shown_text


async def test_token_statistics_with_a_histogram_against_max_seq_length(tmp_path, tiny_model):
    project = write_project(tmp_path / "project", tiny_model, max_seq_length=40)
    app = PaneHarness(lambda: DataPane(project))
    async with app.run_test(size=(120, 40)) as pilot:
        pane, rows = await open_pane(pilot)
        await pilot.press("s")
        stats = pane.query_one(TokenStatsView)
        # The view says "counted" on its task line, then the pane (which keeps the counts)
        # draws them: under load a check between the two saw the empty panel.
        await wait_until(pilot, lambda: "rows counted" in stats.task_line.text
                         and stats.panel.shown_text.strip(), timeout=120,
                         what="the token counts")
        text = stats.panel.shown_text
        assert "40 rows" in text
        assert "max_seq_length 40" in text
        assert "── max_seq_length 40 ──" in text  # persona rows are 36 to 42 tokens long
        assert "are truncated: lines" in text


async def test_a_conversion_from_an_alpaca_json_array(tmp_path, tiny_model):
    project = write_project(tmp_path / "project", tiny_model)
    alpaca = [{"instruction": f"say hello number {i}", "input": "", "output": "hello"}
              for i in range(20)]
    (project / "alpaca.json").write_text(json.dumps(alpaca, indent=2))
    out = tmp_path / "converted"
    app = PaneHarness(lambda: DataPane(project))
    async with app.run_test(size=(100, 36)) as pilot:
        pane, rows = await open_pane(pilot)
        await pilot.press("o", *"alpaca.json", "enter")
        await wait_until(pilot, lambda: pane.rows is not None and pane.rows.known == 20,
                         what="the array's records")
        assert "alpaca" in list_text(rows) and "say hello number 0" in list_text(rows)

        await pilot.press("c")
        form = pane.query_one(ConvertForm)
        assert pane.view == "convert"
        assert str(project / "alpaca.json") in form.query_one("#convert-inputs").value
        out_field = form.query_one("#convert-out")
        out_field.value = ""
        out_field.focus()
        # Letters go into the field, not to the pane's keys (r, t, k, c…).
        await pilot.press(*str(out))
        assert out_field.value == str(out) and pane.view == "convert"
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: "wrote" in form.task_line.text, what="the conversion")
        assert "train.jsonl (16), valid.jsonl (2), test.jsonl (2)" in form.task_line.text
        assert "as chat" in form.task_line.text
        for name in ("train", "valid", "test"):
            assert (out / f"{name}.jsonl").is_file()

        assert {out / "train.jsonl", out / "valid.jsonl", out / "test.jsonl"} <= set(pane.files())
        assert pane.query_one("#data-file", Select).value == out / "train.jsonl"
        assert pane.path == out / "train.jsonl"
        await wait_until(pilot, lambda: rows.row_count == 16, what="the converted rows")
        assert "chat" in list_text(rows) and "user: say hello number" in list_text(rows)


async def test_a_conversion_error_is_one_clear_line(tmp_path, tiny_model):
    project = write_project(tmp_path / "project", tiny_model)
    app = PaneHarness(lambda: DataPane(project))
    async with app.run_test(size=(100, 36)) as pilot:
        pane, _ = await open_pane(pilot)
        await pilot.press("c")
        form = pane.query_one(ConvertForm)
        form.query_one("#convert-out").value = str(project)  # not empty
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: "not empty" in form.task_line.text, what="the error")
        assert form.task_line.has_class("-failed")
        form.query_one("#convert-split").value = "80,30"
        await pilot.press("ctrl+r")
        assert "--split 80,30" in form.task_line.text


async def test_in_the_app_the_digits_of_a_line_number_do_not_switch_panes(tmp_path, tiny_model):
    from textual.widgets import TabbedContent

    from tunedeck.tui.app import TunedeckApp

    project = write_project(tmp_path / "project", tiny_model)
    app = TunedeckApp(project=project)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_until(pilot, lambda: app.query(DataPane), what="the pane")
        pane = app.query_one(DataPane)
        app.action_show_pane("data")
        await wait_until(pilot, lambda: pane.row is not None, what="the first row")
        await pilot.press("g", "3", "2", "enter")  # 3 would show Training, 2 Hyperparameters
        assert app.query_one(TabbedContent).active == "data"
        assert pane.query_one(RowList).cursor == 31
        assert "train.jsonl:32 ·" in panel(app, "raw").shown_text
        await pilot.press("3")  # and afterwards digits choose panes again
        assert app.query_one(TabbedContent).active == "training"


async def test_built_out_of_sight_the_pane_leaves_the_focus_where_it_is(tmp_path, tiny_model):
    """The App builds the Data pane behind the form: opening its first file is no choice of
    the user's, and must not take the focus (the first Select report once did)."""
    from textual.widgets import TabbedContent

    from tunedeck.tui.app import TunedeckApp

    project = write_project(tmp_path / "project", tiny_model)
    app = TunedeckApp(project=project)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.query(DataPane), what="the pane")
        pane = app.query_one(DataPane)
        await wait_until(pilot, lambda: pane.report is not None, what="its file checked")
        await pilot.pause()
        assert app.query_one(TabbedContent).active == "hyperparameters"
        assert app.focused is None or pane not in app.focused.ancestors_with_self


async def test_after_opening_a_file_the_row_list_has_the_focus(tmp_path, tiny_model):
    project = write_project(tmp_path / "project", tiny_model)
    other = tmp_path / "other.jsonl"
    other.write_text("".join(chat(f"other question {i}") + "\n" for i in range(1, 40)))
    app = PaneHarness(lambda: DataPane(project))
    async with app.run_test(size=(120, 36)) as pilot:
        pane, rows = await open_pane(pilot)
        await pilot.press("o", *str(other), "enter")
        await wait_until(pilot, lambda: pane.path == other and pane.row is not None,
                         what="the other file's rows")
        await pilot.pause()
        assert app.focused is rows
        await pilot.press("down", "down")  # the list's own keys work at once
        assert rows.cursor == 2
        assert "other question 3" in panel(app, "raw").shown_text
        # From the convert form too: a conversion opens its train.jsonl in the list.
        await pilot.press("c")
        form = pane.query_one(ConvertForm)
        form.query_one("#convert-out").value = str(tmp_path / "converted")
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: pane.path == tmp_path / "converted" / "train.jsonl"
                         and pane.row is not None, what="the converted file")
        await pilot.pause()
        assert app.focused is rows


async def test_the_replace_splits_box_starts_unticked_and_shows_it(tmp_path, tiny_model):
    from textual.widgets import Checkbox

    project = write_project(tmp_path / "project", tiny_model)
    app = PaneHarness(lambda: DataPane(project))
    async with app.run_test(size=(120, 36)) as pilot:
        pane, _ = await open_pane(pilot)
        await pilot.press("c")
        form = pane.query_one(ConvertForm)
        box = form.query_one("#convert-force", Checkbox)
        assert box.value is False
        assert form.request(project).force is False
        # Textual's checkbox draws an X in the box either way; an unticked one here is empty.
        assert "X" not in box.render().plain.split("replace")[0]
        box.value = True
        await pilot.pause()
        assert "X" in box.render().plain.split("replace")[0]
        assert form.request(project).force is True


async def test_the_pane_reads_the_projects_feature_keys(tmp_path, tiny_model):
    project = write_project(tmp_path / "project", tiny_model, prompt_feature="question",
                            completion_feature="answer")
    write_rows(project, [json.dumps({"question": f"q{i}?", "answer": f"a{i}"})
                         for i in range(1, 9)])
    write_rows(project, [json.dumps({"question": "q?", "answer": "a"})] * 4, "valid.jsonl")
    app = PaneHarness(lambda: DataPane(project))
    async with app.run_test(size=(120, 36)) as pilot:
        pane, rows = await open_pane(pilot)
        await wait_until(pilot, lambda: pane.report is not None, what="the check")
        assert pane.report.ok, [str(p) for p in pane.report.problems]
        assert "completions" in list_text(rows) and "q1?" in list_text(rows)
        await pilot.press("t")
        template = panel(app, "template")
        await wait_until(pilot, lambda: "<|im_start|>" in template.shown_text, timeout=120,
                         what="the rendered template")
        assert "<|im_start|>user\nq1?<|im_end|>\n<|im_start|>assistant\na1" \
            in template.shown_text


async def test_generate_answers_rows_appear_stop_resume_and_flags_in_problems(tmp_path,
                                                                              tiny_model):
    from tunedeck.tui.panes.data.generate_form import GenerateForm

    project = write_project(tmp_path / "project", tiny_model)
    # Enough batches (8 prompts each) that the stop comes while most are still to do.
    # (a quiet machine answers 160 prompts of 3 tokens before a key can come).
    questions = [f"Question {i}: what follows {i}?" for i in range(1, 2001)]
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("".join(q + "\n" for q in questions))
    out = tmp_path / "answers.jsonl"
    app = PaneHarness(lambda: DataPane(project))
    async with app.run_test(size=(120, 40)) as pilot:
        pane, rows = await open_pane(pilot)
        await pilot.press("n")
        form = pane.query_one(GenerateForm)
        assert form.query_one("#generate-model").value == str(tiny_model)  # the project's
        form.query_one("#generate-prompts").value = str(prompts)
        form.query_one("#generate-out").value = str(out)
        form.query_one("#generate-max-tokens").value = "3"
        await pilot.press("ctrl+r")
        # Rows show in the list as they are written; x stops after the batch in flight.
        await wait_until(pilot, lambda: pane.path == out and rows.row_count > 0, timeout=120,
                         what="the first generated rows in the list")
        await pilot.press("x")
        await wait_until(pilot, lambda: "stopped" in form.task_line.text, timeout=120,
                         what="the stop")
        written = out.read_text().splitlines()
        assert 0 < len(written) < len(questions)
        await pilot.press("ctrl+r")  # resumes
        # 2,000 prompts: minutes on a shared machine under load. (Once seen to time out in a
        # full suite run: the failure says where the form and its worker were.)
        try:
            await wait_until(pilot, lambda: "answers written" in form.task_line.text
                             and "stopped" not in form.task_line.text, timeout=480,
                             what="the whole generation")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the task line said {form.task_line.text!r}, its worker "
                                 f"{form.worker!r}, the view {pane.view!r}, "
                                 f"{len(out.read_text().splitlines())} rows written") from None
        rows_written = [json.loads(line) for line in out.read_text().splitlines()]
        assert sorted(r["messages"][0]["content"] for r in rows_written) == sorted(questions)
        assert f"{len(written):,} from before" in form.task_line.text
        await wait_until(pilot, lambda: rows.row_count == len(questions), what="every row")
        # Three tokens cut every answer: the Problems view lists each, by line.
        await pilot.press("p")
        report = pane.query_one(ValidationReport)
        await wait_until(pilot, lambda: len([p for p in report.problems
                                             if "cut at max_tokens" in p.message]) == len(questions),
                         what="the quality flags in the Problems view")
        assert {p.line for p in report.problems if "cut" in p.message} == set(range(1, len(questions) + 1))


async def test_generating_again_in_the_same_worker_thread_works(tmp_path, tiny_model):
    """Textual runs thread workers in asyncio's pool, whose threads are reused. A generation
    that freed its MLX streams in its pool thread broke every later one there: "There is no
    Stream(cpu, N) in current thread". One pool thread makes the reuse certain."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from tunedeck.tui.panes.data.generate_form import GenerateForm

    project = write_project(tmp_path / "project", tiny_model)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("".join(f"Question {i}?\n" for i in range(1, 9)))
    app = PaneHarness(lambda: DataPane(project))
    async with app.run_test(size=(120, 40)) as pilot:
        pool = ThreadPoolExecutor(max_workers=1)
        asyncio.get_running_loop().set_default_executor(pool)
        pane, _ = await open_pane(pilot)
        await pilot.press("n")
        form = pane.query_one(GenerateForm)
        form.query_one("#generate-prompts").value = str(prompts)
        form.query_one("#generate-max-tokens").value = "3"
        for name in ("first.jsonl", "second.jsonl"):
            out = tmp_path / name
            form.query_one("#generate-out").value = str(out)
            await pilot.press("ctrl+r")
            # Done (the form forgets its worker) or failed (the worker stays, finished).
            await wait_until(pilot, lambda: "answers written" in form.task_line.text
                             or (form.worker is not None and form.worker.is_finished),
                             timeout=240, what=f"the answers in {name}")
            assert "answers written" in form.task_line.text, form.task_line.text
            assert len(out.read_text().splitlines()) == 8
        # Greedy answers to the same prompts: the second generation is the first one again.
        assert (tmp_path / "second.jsonl").read_text() == (tmp_path / "first.jsonl").read_text()


async def test_preference_rows_are_named_and_the_form_keeps_the_chosen_answers(tmp_path,
                                                                              tiny_model):
    from textual.widgets import Checkbox

    project = write_project(tmp_path / "project", tiny_model)
    dpo = tmp_path / "dpo.jsonl"
    dpo.write_text("".join(json.dumps({"prompt": f"question {i}?", "chosen": f"good {i}",
                                       "rejected": f"bad {i}"}) + "\n" for i in range(1, 9)))
    app = PaneHarness(lambda: DataPane(project))
    async with app.run_test(size=(120, 40)) as pilot:
        pane, rows = await open_pane(pilot)
        await pilot.press("o", *str(dpo), "enter")
        await wait_until(pilot, lambda: pane.report is not None and pane.path == dpo,
                         what="the check of the preference file")
        assert "pref" in list_text(rows)
        assert [str(p) for p in pane.report.problems] == [
            f"{dpo}:1: preference data (prompt with chosen/rejected answers) is for DPO-style "
            "training, which mlx_lm.lora does not do; to fine-tune on the chosen answers: "
            f"tunedeck data convert {dpo} --out DIR --keep chosen"]
        await pilot.press("c")
        form = pane.query_one(ConvertForm)
        out = tmp_path / "sft"
        form.query_one("#convert-out").value = str(out)
        form.query_one("#convert-split").value = "100,0,0"
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: "--keep chosen" in form.task_line.text,
                         what="the refusal without the box")
        form.query_one("#convert-keep", Checkbox).value = True
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: pane.path == out / "train.jsonl", what="the conversion")
        written = [json.loads(line) for line in (out / "train.jsonl").open()]
        assert sorted(r["completion"] for r in written) == sorted(f"good {i}" for i in range(1, 9))


async def test_shown_before_its_children_exist_the_pane_focuses_its_rows_once_they_do(
        tmp_path, tiny_model):
    from textual.app import App

    project = write_project(tmp_path / "project", tiny_model)
    app = App()
    async with app.run_test(size=(120, 36)) as pilot:
        pane = DataPane(project)
        app.mount(pane)      # the App builds it after the first frame ...
        pane.focus_main()    # ... and a key can show it before its children are composed
        await wait_until(pilot, lambda: pane.row is not None, what="the first row")
        assert app.focused is pane.query_one(RowList)
