"""What the Data pane shows of a row and of a file: text built here, widgets kept thin.

Every piece of dataset text goes through ``literal`` (control characters shown, never obeyed)
and into ``Content`` as plain text, never as markup. Colours are theme variables, resolved when
drawn, so a theme switch recolours the token view too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from textual.content import Content

from tunedeck.core.data import formats as F
from tunedeck.core.data.sources import JSON_ARRAY, TXT

from tunedeck.core.text import literal as safe_lines, plural, visible
from .rows import RowDetail, one_line

# Beyond these, a view shows a note instead of the rest (the terminal would only show a sliver
# of it, and building it would freeze the pane).
MAX_SHOWN_CHARS = 200_000
MAX_SHOWN_TOKENS = 20_000
BAR_WIDTH = 40

ERROR = "$text-error"
WARNING = "$text-warning"
MUTED = "$text-muted"
# Tokens: two shades per kind, alternating, so that token boundaries show.
TRAINED = ("$text-success on $success-muted", "$foreground on $success-muted")
PROMPT = ("$text-muted on $surface", "$foreground-muted on $panel")
CUT = ("$text-error on $error-muted", "$foreground on $error-muted")


def literal(text: str) -> str:
    """Dataset text as core.text's ``literal`` makes it safe to draw, tabs as spaces, and cut
    at MAX_SHOWN_CHARS."""
    if len(text) > MAX_SHOWN_CHARS:
        more = len(text) - MAX_SHOWN_CHARS
        text = text[:MAX_SHOWN_CHARS] + f"\n… {more:,} more characters not shown"
    return safe_lines(text).expandtabs(4)


def issue_lines(issues) -> list:
    return [Content.styled(f"{'✗' if is_error else '!'} {one_line(message)}",
                           ERROR if is_error else WARNING) for is_error, message in issues]


def lines(*parts) -> Content:
    return Content("\n").join(p if isinstance(p, Content) else Content(p) for p in parts)


# -- the pane's bars ---------------------------------------------------------------------------
def views_bar(views, shown: str, errors: int, mask_prompt: bool, max_seq_length: int) -> Content:
    """The views and their keys, the one shown marked, the Problems with their count."""
    parts: list = []
    for view, key, title in views:
        if view == "problems" and errors:
            title += f" {errors:,}"
        parts += [(key, "bold $footer-key-foreground"),
                  (f" {title} ", "bold reverse $text-accent" if view == shown else ""), " "]
    parts.append((f"  mask_prompt {'on' if mask_prompt else 'off'} · "
                  f"max_seq_length {max_seq_length:,}", MUTED))
    return Content.assemble(*parts)


def file_summary(path: Path, rows, report) -> str:
    """The file shown: its format, its lines (while indexing, so far), its check's outcome."""
    parts = [path.name]
    if rows.container == TXT:
        parts.append("plain text")
    elif rows.file_format:
        parts.append(rows.file_format)
    if rows.done:
        parts.append(plural(rows.known, "line" if rows.container != JSON_ARRAY else "record"))
        if not rows.complete:
            parts.append("indexing cancelled")
    else:
        parts.append(f"{rows.known:,} lines so far, indexing {rows.fraction:.0%}")
    if report is not None:
        parts.append(plural(report.errors, "error") if report.errors else
                     ("checked: ok" if report.complete else "check cancelled"))
    return " · ".join(parts)


# -- raw ------------------------------------------------------------------------------------------
def raw_content(detail: RowDetail, file_name: str) -> tuple:
    """(header, body) of the raw view: the record as JSON, or the line as written when it is
    not a record (and then the reason why)."""
    kind = F.describe(detail.format) if detail.format else "not a record"
    where = f"{file_name}:{detail.line} · {kind} · {detail.size:,} bytes"
    header = [Content.styled(where, MUTED)]
    header += issue_lines(detail.issues)
    if detail.record is not None:
        # Re-encoded with an indent for reading; json escapes every control character.
        body = json.dumps(detail.record, indent=2, ensure_ascii=False)
    else:
        body = detail.text
        if detail.shown_bytes < detail.size:
            body += f"\n… {detail.size - detail.shown_bytes:,} more bytes not shown"
    return lines(*header), Content(literal(body))


# -- rendered template and tokens -----------------------------------------------------------------
def settings_line(mask_prompt: bool, max_seq_length: int) -> Content:
    return Content.styled(f"mask_prompt {'on' if mask_prompt else 'off'} (m) · "
                          f"max_seq_length {max_seq_length:,}", MUTED)


def length_verdict(rendered, max_seq_length: int, where: str) -> Content:
    n = len(rendered.token_ids)
    text = f"{where} · {n:,} tokens, {rendered.loss_tokens:,} carry loss · "
    if rendered.truncated:
        return Content.assemble(text, (f"over max_seq_length by {rendered.truncated:,}: "
                                       "mlx-lm truncates it", ERROR))
    return Content.assemble(text, (f"fits max_seq_length {max_seq_length:,}", MUTED))


def _kind(i: int, trained: bool, max_seq_length: int) -> tuple:
    if i >= max_seq_length:
        return CUT
    return TRAINED if trained else PROMPT


def template_content(rendered, model: str, mask_prompt: bool, max_seq_length: int,
                     fmt: Optional[str], where: str) -> tuple:
    """(header, body): the text mlx-lm tokenizes; with mask_prompt, the part that carries loss
    and any part cut by max_seq_length in their token-view colours."""
    if fmt == F.TEXT:
        what = "a text row is tokenized as it is (no chat template)"
    else:
        what = f"the chat template of {one_line(model)}, rendered as mlx-lm renders it"
    header = lines(length_verdict(rendered, max_seq_length, where), Content.styled(what, MUTED),
                   settings_line(mask_prompt, max_seq_length))
    text = rendered.text
    if not (mask_prompt or rendered.truncated) or len(text) > MAX_SHOWN_CHARS:
        return header, Content(literal(text))
    # Runs of tokens of one kind, matched from the end of the text: the tokens decode to the
    # text, except perhaps for a start-of-text token the template does not write.
    runs: list = []
    for i, (token, trained) in enumerate(zip(rendered.token_strings, rendered.loss_mask)):
        kind = _kind(i, trained, max_seq_length)
        if runs and runs[-1][1] == kind:
            runs[-1][0].append(token)
        else:
            runs.append(([token], kind))
    parts, end = [], len(text)
    for tokens, kind in reversed(runs):
        piece = "".join(tokens)
        if kind is PROMPT or not text.endswith(piece, 0, end):
            break
        parts.append((literal(piece), kind[0]))
        end -= len(piece)
    parts.append(literal(text[:end]))
    return header, Content.assemble(*reversed(parts))


def legend(mask_prompt: bool) -> Content:
    untrained = ("prompt: no loss (mask_prompt)" if mask_prompt
                 else "first token: no loss (nothing predicts it)")
    return Content.assemble(("■", TRAINED[0].split(" on ")[0]), " carries loss  ",
                            ("■", "$text-muted"), f" {untrained}  ",
                            ("■", CUT[0].split(" on ")[0]), " cut by max_seq_length  ",
                            ("shades alternate per token", MUTED))


def token_text(token: str) -> str:
    return "↵\n".join(visible(part) for part in token.split("\n"))


def token_content(rendered, mask_prompt: bool, max_seq_length: int, where: str) -> tuple:
    """(header, body): every token, coloured by whether it carries loss."""
    header = lines(length_verdict(rendered, max_seq_length, where), legend(mask_prompt),
                   settings_line(mask_prompt, max_seq_length))
    parts = []
    for i, (token, trained) in enumerate(zip(rendered.token_strings[:MAX_SHOWN_TOKENS],
                                             rendered.loss_mask)):
        parts.append((token_text(token), _kind(i, trained, max_seq_length)[i % 2]))
    more = len(rendered.token_ids) - MAX_SHOWN_TOKENS
    if more > 0:
        parts.append((f"\n… {more:,} more tokens not shown", MUTED))
    return header, Content.assemble(*parts)


# -- token statistics -----------------------------------------------------------------------------
def stats_content(stats, counts) -> Content:
    """The numbers of ``tokens.token_stats`` and its histogram, bins over max_seq_length in the
    error colour (those rows are truncated)."""
    out = []
    if counts.skipped:
        out.append(Content.styled(f"{counts.skipped:,} rows not counted: not usable as they are "
                                  "(see Problems, p)", WARNING))
    for line, message in counts.failures[:5]:
        out.append(Content.styled(f"✗ line {line}: {one_line(message)}", ERROR))
    if len(counts.failures) > 5:
        out.append(Content.styled(f"… {len(counts.failures) - 5:,} more rows mlx-lm cannot "
                                  "tokenize", ERROR))
    if not stats.rows:
        out.append(Content("no rows to count (mlx-lm reads chat, completions or text records; "
                           "convert other formats first: c)"))
        return lines(*out)
    out.append(Content(f"{stats.rows:,} rows · {stats.total:,} tokens, {stats.trained:,} carry "
                       f"loss · min {stats.min:,} · median {stats.median:,} · mean "
                       f"{stats.mean:,.1f} · p95 {stats.p95:,} · max {stats.max:,}"))
    if stats.over:
        shown = ", ".join(str(line) for line, _ in stats.over[:8])
        more = "…" if len(stats.over) > 8 else ""
        out.append(Content.styled(f"{len(stats.over):,} rows over max_seq_length "
                                  f"{stats.max_seq_length:,} are truncated: lines {shown}{more}",
                                  ERROR))
    else:
        out.append(Content.styled(f"every row fits max_seq_length {stats.max_seq_length:,}",
                                  MUTED))
    out.append(Content.styled(f"{'tokens':>17}  rows", MUTED))
    peak = max(rows for _, _, rows in stats.histogram) or 1
    marked = False
    for low, high, rows in stats.histogram:
        over = low >= stats.max_seq_length
        if over and not marked:
            out.append(Content.styled(
                f"{'':>6}── max_seq_length {stats.max_seq_length:,} ──", ERROR))
            marked = True
        bar = "█" * max(1 if rows else 0, round(BAR_WIDTH * rows / peak))
        out.append(Content.assemble((f"{low + 1:>8,}–{high:<8,}", MUTED),
                                    (f"{bar:<{BAR_WIDTH}}", ERROR if over else "$text-primary"),
                                    f" {rows:,}"))
    return lines(*out)
