#!/usr/bin/env python3
"""md2man.py: turn one of Mothership's docs/*.md pages into a man page.

Handles the Markdown our docs use, and only that: ATX headings, paragraphs,
fenced code blocks (also indented inside list items), bullet and numbered
lists (nested by indentation), pipe tables, block quotes, and inline code,
bold, italic and links. The page's first "# " heading is replaced by the
man page's NAME section; what comes before the first "## " heading becomes
DESCRIPTION. Tables become tagged paragraphs (.TP), so no tbl is needed.

    md2man.py --name mothership --section 1 --summary "..." \
              --version 0.1.0 [--see-also "x(5)"]... IN.md OUT
"""
import argparse
import re
import sys

# Pages that have a man page of their own: links to them name the page.
MAN_OF = {
    "cli.md": "mothership(1)",
    "manifest.md": "ship-manifest.toml(5)",
    "docking-protocol.md": "mothership-docking(7)",
}

# Characters the docs use outside ASCII, by their groff names; any other one
# is written as \[uXXXX].
GLYPHS = {
    "\u2192": r"\(->", "\u2190": r"\(<-", "\u2014": r"\(em", "\u2013": r"\(en",
    "\u2019": r"\(cq", "\u2018": r"\(oq", "\u201c": r"\(lq", "\u201d": r"\(rq",
    "\u00d7": r"\(mu", "\u2264": r"\(<=", "\u2265": r"\(>=", "\u2026": r"\&...",
    "\u00b5": r"\(mc", "\u00a0": r"\~",
}


def fallback(c):
    """An ASCII stand-in for a character a device may not have."""
    code = ord(c)
    if 0x2580 <= code <= 0x259F:
        return "#"  # block elements: bars of a chart
    if 0x2500 <= code <= 0x257F:
        return "-" if c in "\u2500\u2501\u2504\u2508" else "|" if c in "\u2502\u2503" else "+"
    return {"\u2191": "^", "\u2193": "v"}.get(c, "?")


def char_fallbacks(markdown):
    """Requests that give every character written as \\[uXXXX] an ASCII
    stand-in on devices without it, so that no device warns."""
    chars = sorted({c for c in markdown if ord(c) >= 128 and c not in GLYPHS})
    return [".if !c\\[u%04X] .char \\[u%04X] %s" % (ord(c), ord(c), fallback(c)) for c in chars]


FENCE = re.compile(r"^(\s*)```")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
ITEM = re.compile(r"^(\s*)([-*+]|\d+[.)])\s+(.*)$")


def glyphs(s):
    return "".join(c if ord(c) < 128 else GLYPHS.get(c, "\\[u%04X]" % ord(c)) for c in s)


def escape(s):
    """Plain text for roff: backslashes, then characters outside ASCII."""
    return glyphs(s.replace("\\", "\\e"))


def escape_code(s):
    """Literal text: as escape(), and every '-' a real minus (for copy and
    paste of options)."""
    return glyphs(s.replace("\\", "\\e").replace("-", "\\-"))


def link_target(text, url):
    """What a link becomes: its text, and the man page or file it points
    to when that is another page."""
    page = url.split("#", 1)[0]
    if not page:
        return text
    if page in MAN_OF:
        ref = MAN_OF[page]
        name, sec = ref[:-3], ref[-2]
        ref_roff = "\\fB%s\\fR(%s)" % (escape(name).replace("-", "\\-"), sec)
        if text in (page, "`%s`" % page):
            return "\x01REF%s\x01" % ref_roff
        return "%s (\x01REF%s\x01)" % (text, ref_roff)
    if text in (page, "`%s`" % page) or re.match(r"^[a-z]+://", text):
        return text
    return "%s (%s)" % (text, page)


def inline(text):
    """Markdown inline markup of a paragraph (lines joined by newlines) to
    roff. Code spans are cut out first so nothing inside them is markup."""
    saved = []

    def keep(roff):
        saved.append(roff)
        return "\x00%d\x00" % (len(saved) - 1)

    def code(m):
        body = m.group(2).replace("\n", " ")
        if body.startswith(" ") and body.endswith(" ") and body.strip():
            body = body[1:-1]
        # a long span may break after a comma rather than run off the line
        return keep("\\fB%s\\fP" % escape_code(body).replace(",", ",\\:"))

    text = re.sub(r"(`+)(.+?)\1", code, text, flags=re.S)
    text = re.sub(r"\[([^\]\n]+)\]\(([^)\s]+)\)", lambda m: link_target(m.group(1), m.group(2)), text)
    text = re.sub(r"<(https?://[^>\s]+)>", r"\1", text)
    text = re.sub(r"\x01REF(.*?)\x01", lambda m: keep(m.group(1)), text)
    text = text.replace("\\", "\\e")
    # an option or a negative number at the start of a word: a real minus
    text = re.sub(r"(?<![\w\\-])-(?=[-\w])", r"\\-", text)
    text = re.sub(r"(?<=\\-)-", r"\\-", text)
    text = glyphs(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"\\fB\1\\fR", text, flags=re.S)
    text = re.sub(r"(?<![\w*])\*(?![\s*])(.+?)(?<![\s*])\*(?![\w*])", r"\\fI\1\\fR", text, flags=re.S)
    text = re.sub(r"\x00(\d+)\x00", lambda m: saved[int(m.group(1))], text)
    return text


def text_lines(roff):
    """Lines of filled text: none may start with a control character or a
    space (a space would break the line)."""
    out = []
    for line in roff.split("\n"):
        line = line.strip()
        if not line:
            continue
        if line[0] in ".'":
            line = "\\&" + line
        out.append(line)
    return out


def code_lines(lines):
    out = []
    for line in lines:
        line = escape_code(line.rstrip())
        if line[:1] in (".", "'"):
            line = "\\&" + line
        out.append(line)
    return out


def split_row(line):
    s = line.strip()
    if s.startswith("|"):
        s = s[1:]
    if s.endswith("|") and not s.endswith("\\|"):
        s = s[:-1]
    cells, cur, in_code = [], "", False
    for i, c in enumerate(s):
        if c == "`":
            in_code = not in_code
        if c == "|" and not in_code and (i == 0 or s[i - 1] != "\\"):
            cells.append(cur.strip())
            cur = ""
        else:
            cur += c
    cells.append(cur.strip())
    return [c.replace("\\|", "|") for c in cells]


def starts_block(line):
    s = line.lstrip()
    return (FENCE.match(line) or HEADING.match(line) or s.startswith("|") or s.startswith(">")
            or ITEM.match(line))


class Converter:
    def __init__(self, lines):
        self.lines = lines
        self.out = []
        self.lists = []     # indentation of each open list, outermost first
        self.in_item = False

    def close_lists(self, indent=-1):
        """Close the lists nested deeper than indent (all with -1)."""
        while self.lists and self.lists[-1] > indent:
            self.lists.pop()
            if self.lists:
                self.out.append(".RE")
        if not self.lists:
            self.in_item = False

    def emit_paragraph(self, text, indent):
        if self.lists and indent > self.lists[0]:
            self.out.append(".IP")  # a paragraph continuing a list item
        else:
            self.close_lists()
            self.out.append(".PP")
        self.out.extend(text_lines(inline(text)))

    def run(self):
        lines, i = self.lines, 0
        while i < len(lines):
            line = lines[i]
            if not line.strip():
                i += 1
                continue
            indent = len(line) - len(line.lstrip())
            m = FENCE.match(line)
            if m:
                body = []
                i += 1
                while i < len(lines) and not FENCE.match(lines[i]):
                    body.append(lines[i][indent:] if lines[i][:indent].strip() == "" else lines[i].lstrip())
                    i += 1
                i += 1
                if self.lists and indent > self.lists[0]:
                    self.out.append(".IP")
                    self.out += [".nf"] + code_lines(body) + [".fi"]
                else:
                    self.close_lists()
                    self.out += [".PP", ".RS 4", ".nf"] + code_lines(body) + [".fi", ".RE"]
                continue
            m = HEADING.match(line)
            if m:
                self.close_lists()
                level, title = len(m.group(1)), m.group(2)
                if level == 1:
                    i += 1
                    continue
                if level == 2 and "`" not in title:
                    title = title.upper()
                self.out.append(".SH" if level == 2 else ".SS")
                self.out.append(" ".join(text_lines(inline(title))))
                i += 1
                continue
            if line.lstrip().startswith("|"):
                rows = []
                while i < len(lines) and lines[i].lstrip().startswith("|"):
                    rows.append(split_row(lines[i]))
                    i += 1
                self.table(rows, indent)
                continue
            if line.lstrip().startswith(">"):
                quote = []
                while i < len(lines) and lines[i].lstrip().startswith(">"):
                    quote.append(re.sub(r"^\s*> ?", "", lines[i]))
                    i += 1
                self.close_lists()
                self.out.append(".RS 4")
                sub = Converter(quote)
                sub.run()
                self.out += sub.out
                self.out.append(".RE")
                continue
            m = ITEM.match(line)
            if m:
                d, mark, first = len(m.group(1)), m.group(2), m.group(3)
                self.close_lists(d)
                if not self.lists or d > self.lists[-1]:
                    if self.lists:
                        self.out.append(".RS 4")
                    self.lists.append(d)
                body = [first]
                i += 1
                while i < len(lines) and lines[i].strip() and not starts_block(lines[i]):
                    body.append(lines[i])
                    i += 1
                if mark[0].isdigit():
                    self.out.append(".IP %s 4" % mark)
                else:
                    self.out.append(".IP \\(bu 2")
                self.out.extend(text_lines(inline("\n".join(body))))
                continue
            para = [line]
            i += 1
            while i < len(lines) and lines[i].strip() and not starts_block(lines[i]):
                para.append(lines[i])
                i += 1
            self.emit_paragraph("\n".join(para), indent)
        self.close_lists()

    def table(self, rows, indent):
        """A table as tagged paragraphs: the first cell is the tag; with
        more than two columns each other cell is named by its header."""
        self.close_lists()
        if len(rows) >= 2 and all(re.fullmatch(r":?-+:?", c) for c in rows[1] if c):
            header, body = rows[0], rows[2:]
        else:
            header, body = [], rows
        self.out.append(".PP")
        for row in body:
            self.out.append(".TP")
            self.out.extend(text_lines(inline(row[0])) or ["\\&"])
            rest = row[1:]
            if len(rest) == 1:
                self.out.extend(text_lines(inline(rest[0])) or ["\\&"])
                continue
            for j, cell in enumerate(rest, 1):
                if j > 1:
                    self.out.append(".br")
                name = header[j] if j < len(header) else ""
                prefix = "\\fI%s\\fR: " % escape(name) if name else ""
                cell_lines = text_lines(inline(cell)) or ["\\&"]
                cell_lines[0] = prefix + cell_lines[0]
                self.out.extend(cell_lines)


def convert(markdown, name, section, summary, version, see_also):
    conv = Converter(markdown.splitlines())
    conv.run()
    body = conv.out
    # what comes before the first section is the description
    if not body or body[0] != ".SH":
        body = [".SH", "DESCRIPTION"] + body
    head = [
        '.\\" Generated from the Markdown documentation by scripts/md2man.py; do not edit.',
        '.TH "%s" "%s" "" "Mothership %s" "Mothership Manual"' % (name.upper(), section, version),
        ".nh",
        ".ad l",
    ] + char_fallbacks(markdown) + [
        ".SH NAME",
        "%s \\- %s" % (escape(name).replace("-", "\\-"), escape(summary)),
    ]
    tail = []
    if see_also:
        refs = []
        for ref in see_also:
            m = re.fullmatch(r"(.+)\((\w+)\)", ref)
            refs.append("\\fB%s\\fR(%s)" % (escape_code(m.group(1)), m.group(2)) if m else escape(ref))
        tail = [".SH SEE ALSO", ",\n".join(refs)]
    return "\n".join(head + body + tail) + "\n"


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--name", required=True)
    ap.add_argument("--section", required=True)
    ap.add_argument("--summary", required=True)
    ap.add_argument("--version", required=True)
    ap.add_argument("--see-also", action="append", default=[])
    ap.add_argument("input")
    ap.add_argument("output")
    a = ap.parse_args(argv)
    with open(a.input, encoding="utf-8") as f:
        markdown = f.read()
    roff = convert(markdown, a.name, a.section, a.summary, a.version, a.see_also)
    with open(a.output, "w", encoding="utf-8") as f:
        f.write(roff)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
