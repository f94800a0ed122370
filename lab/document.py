"""One page, two renderings: the lab's reports as markdown and as a standalone HTML page.

Owns: a small document model (headings, paragraphs, bullet lists, tables), its markdown and
HTML renderings, and a reader for the subset of markdown the interviewer notes use (paragraphs,
lists, tables), so a rubric written in ``INTERVIEWER.md`` lands in both renderings.

Must not: know what a report says (``learning`` and ``scorecard`` build the documents), or
write files.

Both renderings come from the same blocks, so the HTML a manager opens and the markdown kept
in a repository never disagree. Inline markup is the notes' own: ```code```, ``**bold**``,
``_emphasis_``.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

STYLE = """\
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem;
       color: #1d232a; line-height: 1.45; }
h1 { font-size: 1.6rem; border-bottom: 2px solid #d0d7de; padding-bottom: .3rem; }
h2 { font-size: 1.25rem; margin-top: 2rem; }
table { border-collapse: collapse; margin: .8rem 0; width: 100%; }
th, td { border: 1px solid #d0d7de; padding: .35rem .55rem; text-align: left;
         vertical-align: top; }
th { background: #f3f5f7; }
code { background: #f3f5f7; padding: 0 .2rem; border-radius: 3px; }
"""


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: list[str]
    numbered: bool = False


@dataclass(frozen=True)
class Table:
    header: list[str]
    rows: list[list[str]]


Block = Heading | Paragraph | Bullets | Table


@dataclass
class Document:
    title: str
    blocks: list[Block] = field(default_factory=list)

    def heading(self, text: str, level: int = 2) -> None:
        self.blocks.append(Heading(level, text))

    def paragraph(self, text: str) -> None:
        self.blocks.append(Paragraph(text))

    def bullets(self, items: list[str], numbered: bool = False) -> None:
        if items:
            self.blocks.append(Bullets(list(items), numbered))

    def table(self, header: list[str], rows: list[list[str]]) -> None:
        self.blocks.append(Table(list(header), [list(row) for row in rows]))

    def markdown_text(self, text: str) -> None:
        """Append a passage written in markdown (a section of the interviewer notes)."""
        self.blocks += parse_markdown(text)

    # --- renderings ----------------------------------------------------------------------------

    def to_markdown(self) -> str:
        parts = [f"# {self.title}"]
        for block in self.blocks:
            if isinstance(block, Heading):
                parts.append(f"{'#' * block.level} {block.text}")
            elif isinstance(block, Paragraph):
                parts.append(block.text)
            elif isinstance(block, Bullets):
                parts.append(
                    "\n".join(
                        f"{f'{i}.' if block.numbered else '-'} {item}"
                        for i, item in enumerate(block.items, 1)
                    )
                )
            else:
                lines = [_md_row(block.header), _md_row(["---"] * len(block.header))]
                lines += [_md_row(row) for row in block.rows]
                parts.append("\n".join(lines))
        return "\n\n".join(parts) + "\n"

    def to_html(self) -> str:
        body = [f"<h1>{inline_html(self.title)}</h1>"]
        for block in self.blocks:
            if isinstance(block, Heading):
                level = min(max(block.level, 2), 6)
                body.append(f"<h{level}>{inline_html(block.text)}</h{level}>")
            elif isinstance(block, Paragraph):
                body.append(f"<p>{inline_html(block.text)}</p>")
            elif isinstance(block, Bullets):
                tag = "ol" if block.numbered else "ul"
                items = "".join(f"<li>{inline_html(item)}</li>" for item in block.items)
                body.append(f"<{tag}>{items}</{tag}>")
            else:
                head = "".join(f"<th>{inline_html(cell)}</th>" for cell in block.header)
                rows = "".join(
                    "<tr>" + "".join(f"<td>{inline_html(cell)}</td>" for cell in row) + "</tr>"
                    for row in block.rows
                )
                body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        return (
            '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{html.escape(self.title)}</title>\n<style>\n{STYLE}</style>\n</head>\n"
            "<body>\n" + "\n".join(body) + "\n</body>\n</html>\n"
        )


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|").replace("\n", " ") for cell in cells) + " |"


INLINE = re.compile(r"`([^`]+)`|\*\*(.+?)\*\*|(?<![\w])_(.+?)_(?![\w])")


def inline_html(text: str) -> str:
    """Escape ``text`` for HTML, turning the notes' inline markup into tags."""
    out: list[str] = []
    position = 0
    for match in INLINE.finditer(text):
        out.append(html.escape(text[position : match.start()]))
        code, strong, emphasis = match.groups()
        if code is not None:
            out.append(f"<code>{html.escape(code)}</code>")
        elif strong is not None:
            out.append(f"<strong>{inline_html(strong)}</strong>")
        else:
            out.append(f"<em>{inline_html(emphasis)}</em>")
        position = match.end()
    out.append(html.escape(text[position:]))
    return "".join(out)


LIST_ITEM = re.compile(r"^(?:(?P<bullet>[-*])|(?P<number>\d+)\.)\s+(?P<text>.*)$")


def parse_markdown(text: str) -> list[Block]:
    """Paragraphs, bullet and numbered lists (indented lines continue an item), tables and
    headings of a markdown passage; anything else reads as a paragraph."""
    blocks: list[Block] = []
    paragraph: list[str] = []
    items: list[str] = []
    numbered = False
    table: list[list[str]] = []

    def flush() -> None:
        nonlocal paragraph, items, table
        if paragraph:
            blocks.append(Paragraph(" ".join(paragraph)))
        if items:
            blocks.append(Bullets(items, numbered))
        if table:
            rows = [row for row in table[1:] if not all(set(c) <= set("-: ") for c in row)]
            blocks.append(Table(table[0], rows))
        paragraph, items, table = [], [], []

    for line in text.splitlines():
        stripped = line.strip()
        item = LIST_ITEM.match(stripped) if not line.startswith((" ", "\t")) else None
        if not stripped:
            flush()
        elif stripped.startswith("|") and stripped.endswith("|"):
            if paragraph or items:
                flush()
            cells = re.split(r"(?<!\\)\|", stripped[1:-1])
            table.append([cell.strip().replace("\\|", "|") for cell in cells])
        elif heading := re.match(r"^(#{1,6})\s+(.*)$", stripped):
            flush()
            blocks.append(Heading(len(heading.group(1)), heading.group(2)))
        elif item:
            if paragraph or table:
                flush()
            numbered = item.group("number") is not None
            items.append(item.group("text"))
        elif items and line.startswith((" ", "\t")):
            items[-1] += " " + stripped
        else:
            if items or table:
                flush()
            paragraph.append(stripped)
    flush()
    return blocks
