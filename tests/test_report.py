"""The HTML report: one self-contained page that parses, embeds thumbnails, escapes names."""

from __future__ import annotations

import base64
import io
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from phototag.app.cli import main
from phototag.data import from_label_sets
from phototag.library.report import HtmlReport, thumbnail_data_uri
from phototag.models import create_annotator

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
EVIL = "<script>alert('x')</script>&\"<img src=x onerror=alert(1)>.jpg"


class Page(HTMLParser):
    """Collects tags, their attributes and the text of a page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.open: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag not in ("meta", "img", "br"):
            self.open.append(tag)

    def handle_endtag(self, tag):
        assert self.open and self.open[-1] == tag, f"</{tag}> closes {self.open[-1:]}"
        self.open.pop()

    def handle_data(self, data):
        self.text.append(data)


def parse(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    assert page.open == []  # every element closed, in order
    return page


@pytest.fixture
def evil_photo(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    path = folder / EVIL.replace("/", "_")
    path.write_bytes((EXAMPLES / "chelsea.jpg").read_bytes())
    return path


def test_thumbnail_is_a_small_jpeg():
    uri = thumbnail_data_uri(EXAMPLES / "rocket.jpg", size=64)
    assert uri.startswith("data:image/jpeg;base64,")
    image = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    assert image.format == "JPEG" and max(image.size) == 64


def test_page_parses_and_escapes_everything(evil_photo, tmp_path):
    out = tmp_path / "report.html"
    with HtmlReport(out, title="run <b>1</b>") as report:
        report.add(evil_photo, [("<b>cat</b>", 0.9), ("sky & sea", 0.25)])
        report.add(tmp_path / 'bad"<i>.jpg', error="bad<i>.jpg: the file is <empty>")
        report.summary = ["2 photos, 1 tagged, <1> skipped"]
    page = parse(out)
    names = [tag for tag, _ in page.tags]
    assert "script" not in names and "b" not in names and "i" not in names
    images = [attrs for tag, attrs in page.tags if tag == "img"]
    assert len(images) == 1 and images[0]["src"].startswith("data:image/jpeg;base64,")
    assert images[0]["alt"] == str(evil_photo) and "onerror" not in images[0]
    text = "".join(page.text)
    assert str(evil_photo) in text and "<b>cat</b>" in text and "sky & sea" in text
    assert "run <b>1</b>" in text and "bad<i>.jpg: the file is <empty>" in text
    assert "<1> skipped" in text
    csp = [a for t, a in page.tags if t == "meta" and a.get("http-equiv")]
    assert "default-src 'none'" in csp[0]["content"]  # no script, nothing from outside


def test_unfinished_report_writes_nothing(tmp_path):
    out = tmp_path / "report.html"
    with pytest.raises(KeyboardInterrupt), HtmlReport(out) as report:
        report.add(EXAMPLES / "coffee.jpg", [("cup", 1.0)])
        raise KeyboardInterrupt
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_annotate_report_option(evil_photo, tmp_path, capsys):
    train = from_label_sets("t", list("ab"), [["sky", "cat"], ["sky"]])
    model = str(create_annotator("prior").fit(train).save(tmp_path / "model"))
    out = tmp_path / "r.html"  # the prior model reads no pixels: a missing file fails
    code = main(["annotate", str(evil_photo.parent), str(tmp_path / "gone<>.jpg"), "--model",
                 model, "--report", str(out),
                 "--journal", str(tmp_path / "j.sqlite")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and "annotate: 2 photos, 1 tagged, 1 skipped" in err
    page = parse(out)
    text = "".join(page.text)
    assert "script" not in [tag for tag, _ in page.tags]
    assert str(evil_photo) in text and "sky" in text and "gone<>.jpg" in text
    assert "no such file or folder" in text and "annotate: 2 photos" in text
    assert sum(tag == "img" for tag, _ in page.tags) == 1
