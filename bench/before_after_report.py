"""Turn bench/before_after.sh's farm-bench reports into a BENCHMARKS.md section (replacing an older one).

    python bench/before_after_report.py REPORT.txt BENCHMARKS.md [TITLE]

TITLE (default: issue 10's) names the change measured; a section of the same title is replaced, others kept.

The figures are farm-bench's medians, read from its report; nothing is computed here but the table.
"""

from __future__ import annotations

import platform
import re
import sys
from pathlib import Path

TITLE = "Before and after the restructuring (issue 10)"


def sections(text: str) -> list[tuple[str, dict[str, tuple[str, str, str]]]]:
    """[(heading, {"A cpu s": (min, median, max), ...})] for each '== heading' block of the report."""
    out = []
    for block in re.split(r"^== ", text, flags=re.M)[1:]:
        heading, _, body = block.partition("\n")
        rows = {m[1].strip(): (m[2], m[3], m[4]) for m in
                re.finditer(r"^((?:A|B|A/B) [A-Za-z ]+?)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*$", body, re.M)}
        out.append((heading.strip(), rows))
    return out


def section(report: str, title: str) -> str:
    head = next((line for line in report.splitlines() if line.startswith("A:")), "")
    machine = next((line for line in report.splitlines() if line.startswith("farm-bench")), "")
    lines = [title, "", f"Written by `bench/before_after.sh` (farm-bench, A and B in turn, ratio pair by pair, medians). {head}.",
             f"Machine: {platform.machine()}, `{machine}`.", "",
             "| what (B: the commit before, unless the line says otherwise) | A CPU s | B CPU s | A/B CPU (min-max) | A/B wall | A peak MiB | B peak MiB |",
             "|---|---|---|---|---|---|---|"]
    for heading, rows in sections(report):
        def med(name: str) -> str:
            return rows.get(name, ("?", "?", "?"))[1]
        spread = rows.get("A/B cpu", ("?", "?", "?"))
        lines.append(f"| {heading} | {med('A cpu s')} | {med('B cpu s')} | {med('A/B cpu')} "
                     f"({spread[0]}-{spread[2]}) | {med('A/B wall')} | {med('A peak MiB')} | {med('B peak MiB')} |")
    lines += ["", "<details><summary>farm-bench's reports</summary>", "", "```", report.strip(), "```", "", "</details>", ""]
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    report, target = Path(argv[0]).read_text(), Path(argv[1])
    title = f"## {argv[2] if len(argv) > 2 else TITLE}, side by side"
    text = target.read_text() if target.exists() else ""
    start = text.find(title)
    if start >= 0:
        end = text.find("\n## ", start + len(title))
        text = text[:start].rstrip("\n") + ("\n\n" + text[end + 1:] if end >= 0 else "\n")
    target.write_text(text.rstrip("\n") + "\n\n" + section(report, title))


if __name__ == "__main__":
    main(sys.argv[1:])
