"""The Data pane shows dataset rows exactly as written."""

import json

from textual.widgets import DataTable

from tunedeck.tui.data_pane import DataPane

from .harness import PaneHarness, wait_until

HOSTILE = ["[bold red]x[/]", "[link=file:///etc/passwd]x[/link]", "\x1b[2J\x1b]0;pwned\x07"]


async def test_markup_and_escape_sequences_in_a_row_show_literally(tmp_path):
    data = tmp_path / "project" / "data"
    data.mkdir(parents=True)
    with open(data / "train.jsonl", "w") as f:
        for text in HOSTILE:
            f.write(json.dumps({"messages": [{"role": "user", "content": text},
                                             {"role": "assistant", "content": "ok"}]}) + "\n")
        f.write("{not json\n")
    app = PaneHarness(lambda: DataPane(tmp_path / "project"))
    async with app.run_test(size=(160, 30)) as pilot:
        table = app.query_one(DataTable)
        await wait_until(pilot, lambda: table.row_count == 4, what="the rows")
        shown = "\n".join(table.render_line(y).text for y in range(table.size.height))
        assert "user: [bold red]x[/]" in shown
        assert "user: [link=file:///etc/passwd]x[/link]" in shown
        assert "user: ^[[2J^[]0;pwned^G" in shown
        assert "\x1b" not in shown
        assert "not JSON" in shown  # a bad line is reported, the good rows still show
