"""Text from logs and datasets reaches the screen as typed, never as markup or terminal codes."""

from tunedeck.core.text import literal, log_line, loss_text, plural, size_text, visible


def test_markup_is_left_alone_for_widgets_to_show_literally():
    assert visible("[bold red]x[/]") == "[bold red]x[/]"


def test_escape_sequences_are_made_visible():
    link = "\x1b]8;;file:///etc/passwd\x1b\\x\x1b]8;;\x1b\\"
    assert "\x1b" not in visible(link)
    assert visible(link) == "^[]8;;file:///etc/passwd^[\\x^[]8;;^[\\"
    assert visible("bell\x07 del\x7f c1\x9b") == "bell^G del^? c1\\x9b"


def test_an_answer_of_several_lines_keeps_its_line_breaks_and_shows_its_escapes():
    # literal is what the Chat pane, the evaluation screen and `tunedeck chat` on a terminal
    # show an answer with: a newline is a line break, not "^J".
    assert literal("Paris.\n\x1b[2JArr!") == "Paris.\n^[[2JArr!"


def test_tabs_stay_tabs():
    assert visible("a\tb") == "a\tb"


def test_mlx_lm_colours_and_redraws_are_stripped_from_log_lines():
    raw = "\x1b[38;5;244m  20\x1b[0m    \x1b[1;32m2.859 ▼\x1b[0m"
    assert log_line(raw) == "  20    2.859 ▼"
    assert log_line("train 10%\rtrain 20%\rtrain 30%\n") == "train 30%"
    assert log_line("\x1b[2K\x1b[1Adone") == "done"


def test_other_escapes_in_log_lines_stay_visible():
    assert log_line("model said \x1b]0;pwned\x07") == "model said ^[]0;pwned^G"


def test_counts_and_losses_read_the_same_everywhere():
    assert plural(1, "row") == "1 row"
    assert plural(2048, "row") == "2,048 rows"
    assert loss_text(1.23456) == "1.235"
    assert loss_text(None) == "-" and loss_text(None, missing="—") == "—"


def test_sizes_read_in_the_unit_that_fits():
    assert size_text(512) == "512 B"
    assert size_text(1_500_000) == "1.5 MB"
    assert size_text(34_359_738_368) == "34.4 GB"
    assert size_text(2.5e12) == "2.5 TB"
