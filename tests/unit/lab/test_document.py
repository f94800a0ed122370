"""One document, two renderings: markdown and HTML agree, and the notes' markdown reads in."""

from __future__ import annotations

from lab.document import Bullets, Document, Paragraph, Table, inline_html, parse_markdown

RUBRIC = """\
Grade each dimension separately.

| dimension | junior | mid | senior |
|---|---|---|---|
| detection | runs `make monitor` | sees it \\| early | **frames** it |

- **Junior**: follows the alert
  to the store.
- **Senior**: impact and prevention.
"""


def test_the_notes_markdown_becomes_paragraphs_tables_and_lists() -> None:
    blocks = parse_markdown(RUBRIC)
    assert blocks[0] == Paragraph("Grade each dimension separately.")
    assert blocks[1] == Table(
        ["dimension", "junior", "mid", "senior"],
        [["detection", "runs `make monitor`", "sees it | early", "**frames** it"]],
    )
    assert blocks[2] == Bullets(
        ["**Junior**: follows the alert to the store.", "**Senior**: impact and prevention."]
    )


def test_markdown_and_html_render_the_same_blocks_and_html_is_escaped() -> None:
    doc = Document("Scorecard <session>")
    doc.paragraph("time to first correct check: **12 min**")
    doc.markdown_text(RUBRIC)
    markdown = doc.to_markdown()
    assert markdown.startswith("# Scorecard <session>\n\ntime to first correct check: **12 min**")
    assert "| detection | runs `make monitor` | sees it \\| early | **frames** it |" in markdown
    page = doc.to_html()
    assert "<title>Scorecard &lt;session&gt;</title>" in page
    assert "<td>runs <code>make monitor</code></td>" in page
    assert "<li><strong>Junior</strong>: follows the alert to the store.</li>" in page
    assert inline_html("a <b> & `x<y`") == "a &lt;b&gt; &amp; <code>x&lt;y</code>"
    assert inline_html("snake_case_name stays") == "snake_case_name stays"
