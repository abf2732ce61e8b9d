"""The one Markdown writer: tables, "not measured" cells, and README sections.

Every report, experiment and benchmark renders its JSON through these, so a
table or a missing value looks the same everywhere.

    >>> print(md_table(["net", "error %"], [["resnet20", cell(8.1, ".2f")]], align="lr"))
    | net | error % |
    |---|---:|
    | resnet20 | 8.10 |
"""

import re

DASH = "—"  # a value that was not measured, or does not apply
_RULES = {"l": "---", "r": "---:"}


def cell(value, spec="", suffix=""):
    """One table cell: `value` formatted with `spec`, or a dash for None.

    Args:
        value: the number or text, or None for "not measured".
        spec: str, a format spec (`".2f"`, `"+.2f"`, `","`).
        suffix: str appended to a formatted value (not to the dash), e.g. `" G"`.

    Returns:
        The cell as a str.
    """
    return DASH if value is None else f"{value:{spec}}{suffix}"


def percent(fraction):
    """A fraction in [0, 1] as a percentage cell with 2 decimals, or a dash."""
    return cell(None if fraction is None else 100.0 * fraction, ".2f")


def kib(size_bytes):
    """A size in bytes as a KiB cell with 1 decimal, or a dash."""
    return cell(None if size_bytes is None else size_bytes / 1024.0, ".1f")


def interval_words(interval, confidence):
    """`95% CI -0.62 to +0.06`: an interval in points at its level."""
    return f"{100 * confidence:g}% CI {interval[0]:+.2f} to {interval[1]:+.2f}"


def worst_end(points, budget):
    """An interval's worst end in points; 3 decimals where 2 would show the budget itself."""
    return f"{points:+.3f}" if round(points, 2) >= -budget else f"{points:+.2f}"


def p_words(value):
    """A p-value as the report writes it: `p = 0.042`, or `p < 0.001`."""
    return "p < 0.001" if value < 0.001 else f"p = {value:.3f}"


def md_table(headers, rows, *, align):
    """A GitHub Markdown table; `|` inside a cell is escaped.

    Args:
        headers: list of column titles.
        rows: list of rows, each a list of cells (str() is applied).
        align: str or list, one `l` (left) or `r` (right) per column.

    Returns:
        The table as a str, without a trailing newline.

    Raises:
        ValueError: an alignment other than `l`/`r`, or a row or `align`
            whose length differs from the headers'.
    """
    if len(align) != len(headers) or set(align) - set(_RULES):
        raise ValueError(f"align must give one of {sorted(_RULES)} per column "
                         f"({len(headers)}), got {align!r}.")
    for row in rows:
        if len(row) != len(headers):
            raise ValueError(f"row {row!r} has {len(row)} cells for {len(headers)} headers.")

    def line(cells):
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"
    return "\n".join([line(headers), "|" + "|".join(_RULES[a] for a in align) + "|"]
                     + [line(row) for row in rows])


def replace_section(text, name, body):
    """Puts `body` between the `<!-- name:begin -->` and `<!-- name:end -->` lines.

    Args:
        text: the document (README.md's text).
        name: str, the section's marker name.
        body: str, the new content; one trailing newline is kept.

    Returns:
        The new text.

    Raises:
        ValueError: the text has no such markers.
    """
    marker = re.escape(name)
    pattern = re.compile(rf"(<!-- {marker}:begin -->\n).*?(<!-- {marker}:end -->)", re.S)
    if not pattern.search(text):
        raise ValueError(f"the text has no <!-- {name}:begin --> ... <!-- {name}:end --> "
                         f"markers.")
    return pattern.sub(lambda m: m.group(1) + body.rstrip() + "\n" + m.group(2), text)
