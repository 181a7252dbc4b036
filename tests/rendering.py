"""Pictures in tests: terminal output as HTML, pixel counts of screenshots, README images.

``otel-jobtrack status`` colours with ANSI escapes; :func:`ansi_to_html` turns them into a
dark terminal page that headless Chromium can photograph, so the README's terminal picture is
made from the command's real output. ``pytest --update-doc-images`` copies the pictures the
tests render into ``docs/images/``.
"""

from __future__ import annotations

import html
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from tests.backends import REPO_ROOT

DOC_IMAGES = REPO_ROOT / "docs" / "images"

_SGR = re.compile(r"\x1b\[([0-9;]*)m")
_COLORS = {
    "31": "#ff6b6b",
    "32": "#69db7c",
    "33": "#ffd43b",
    "34": "#74c0fc",
    "35": "#da77f2",
    "36": "#66d9e8",
}


def ansi_to_html(text: str, title: str = "terminal") -> str:
    """A page showing ``text`` as a dark terminal would, SGR colours and bold included."""
    out: list[str] = []
    open_span = False
    pos = 0
    for match in _SGR.finditer(text):
        out.append(html.escape(text[pos : match.start()]))
        pos = match.end()
        if open_span:
            out.append("</span>")
            open_span = False
        codes = [c for c in match.group(1).split(";") if c and c != "0"]
        if codes:
            style = []
            for code in codes:
                if code == "1":
                    style.append("font-weight:bold")
                elif code == "2":
                    style.append("opacity:.6")
                elif code in _COLORS:
                    style.append(f"color:{_COLORS[code]}")
            out.append(f'<span style="{";".join(style)}">')
            open_span = True
    out.append(html.escape(text[pos:]))
    if open_span:
        out.append("</span>")
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>"
        "body{margin:0;background:#1e1f22}"
        "pre{margin:0;padding:14px 18px;color:#d8dadf;background:#1e1f22;"
        "font:13px/1.35 'DejaVu Sans Mono',Menlo,Consolas,monospace;white-space:pre}"
        ".bar{background:#2b2d31;color:#8a8f98;padding:6px 18px;font:12px sans-serif}"
        f"</style></head><body><div class='bar'>{html.escape(title)}</div>"
        f"<pre>{''.join(out)}</pre></body></html>\n"
    )


def pixel_stats(png: Path, background: tuple[int, int, int]) -> dict[str, float]:
    """Share of pixels that differ from ``background``, and counts of the report's colours."""
    image = Image.open(png).convert("RGB")
    width, height = image.size
    data = image.tobytes()
    total = width * height
    differ = 0
    colours = {"green": 0, "blue": 0, "red": 0, "purple": 0, "light_red": 0}
    br, bg, bb = background
    for i in range(0, len(data), 3):
        r, g, b = data[i], data[i + 1], data[i + 2]
        if abs(r - br) + abs(g - bg) + abs(b - bb) > 30:
            differ += 1
        if g > 130 and r < 80 and b < 100:
            colours["green"] += 1
        elif b > 200 and r < 100 and g < 130:
            colours["blue"] += 1
        elif r > 200 and g < 80 and b < 80:
            colours["red"] += 1
        elif r > 90 and b > 200 and g < 100:
            colours["purple"] += 1
        elif r > 220 and 80 < g < 140 and 80 < b < 140:
            colours["light_red"] += 1  # red text on a dark terminal
    return {"width": width, "height": height, "non_background": differ / total, **colours}


def save_doc_image(
    request: pytest.FixtureRequest,
    source: Path,
    name: str,
    crop_height: int | None = None,
    transform: Callable[[Image.Image], Image.Image] | None = None,
) -> None:
    """With ``--update-doc-images``: copy (the top ``crop_height`` pixels of) ``source``."""
    if not request.config.getoption("--update-doc-images"):
        return
    DOC_IMAGES.mkdir(parents=True, exist_ok=True)
    target = DOC_IMAGES / name
    if crop_height is None and transform is None:
        shutil.copyfile(source, target)
        return
    image = Image.open(source)
    if crop_height is not None:
        image = image.crop((0, 0, image.size[0], min(crop_height, image.size[1])))
    if transform is not None:
        image = transform(image)
    image.save(target, optimize=True)
