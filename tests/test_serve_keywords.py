"""`phototag serve` writes what the user accepts: sidecars, existing keywords, accept-all,
keyword filter, sidecar download, HEIC previews, ``--write none``."""

import io
import sqlite3
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from test_serve import EXAMPLES, LOCAL, PAGE_HEADERS, serve_config, tiny_model, upload  # noqa: F401

from phototag.app.cli import main
from phototag.app.server import ServerConfig, create_app
from phototag.errors import InvalidInputError
from phototag.metadata import NAMESPACE, read_keywords, untag

#: A sidecar a user's photo manager wrote: their own keywords, none of phototag's.
USER_SIDECAR = """<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/">
<dc:subject><rdf:Bag><rdf:li>Tabby</rdf:li><rdf:li>cat</rdf:li></rdf:Bag></dc:subject>
</rdf:Description></rdf:RDF></x:xmpmeta>
<?xpacket end="w"?>"""


@pytest.fixture
def folder(tmp_path) -> Path:
    """chelsea.jpg with the user's keywords Tabby and cat; coffee.jpg with a broken sidecar."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("chelsea", "coffee", "rocket"):
        (photos / f"{name}.jpg").write_bytes((EXAMPLES / f"{name}.jpg").read_bytes())
    (photos / "chelsea.jpg.xmp").write_text(USER_SIDECAR)
    (photos / "coffee.jpg.xmp").write_text("<x:xmpmeta>Tom & Jerry")  # not well-formed
    return photos


def _client(tiny_model, tmp_path, folder, **options):  # noqa: F811
    app = create_app(serve_config(tiny_model, tmp_path, folder=folder, **options))
    return TestClient(app, base_url=LOCAL, headers=PAGE_HEADERS)


def _decide(client, photo, label, decision, score=None):
    body = {"label": label, "decision": decision, "score": score}
    return client.post(f"/api/photos/{photo}/decisions", json=body)


def test_accept_writes_the_sidecar_and_reject_takes_phototags_keyword_out(
    tiny_model,  # noqa: F811
    tmp_path,
    folder,
):
    with _client(tiny_model, tmp_path, folder) as client:
        result = client.post("/api/folder/photos", json={"path": "chelsea.jpg"}).json()
        assert result["existing"] == ["Tabby", "cat"] and result["written"] == []
        assert result["writes"] is True and result["metadata_error"] is None
        marked = {t["label"]: t["in_photo"] for t in result["tags"]}
        assert marked["cat"] is True and marked["animal"] is False
        photo = result["photo"]["id"]

        accepted = _decide(client, photo, "animal", "accepted", 0.7).json()
        assert accepted["decision"] == "accepted"
        assert accepted["written"] == {"file": "chelsea.jpg.xmp", "added": ["animal"],
                                       "removed": []}  # fmt: skip
        keywords = read_keywords(folder / "chelsea.jpg")
        assert keywords.user == ("Tabby", "cat") and [a.label for a in keywords.automatic] == [
            "animal"
        ]
        again = client.get(f"/api/photos/{photo}/suggestions").json()
        assert again["written"] == ["animal"] and again["existing"] == ["Tabby", "cat"]

        # the user's own keyword is never removed; phototag's comes out again
        assert _decide(client, photo, "cat", "rejected").json()["written"] is None
        removed = _decide(client, photo, "animal", "rejected").json()["written"]
        assert removed == {"file": "chelsea.jpg.xmp", "added": [], "removed": ["animal"]}
        keywords = read_keywords(folder / "chelsea.jpg")
        assert keywords.user == ("Tabby", "cat") and keywords.automatic == ()

        # accept all shown suggestions at once: one write; the user's "cat" is not doubled
        tags = [{"label": t["label"], "score": t["score"]} for t in result["tags"]]
        saved = client.post(f"/api/photos/{photo}/accepted", json={"tags": tags})
        assert saved.status_code == 200, saved.text
        assert {d["label"] for d in saved.json()["decisions"]} == {t["label"] for t in tags}
        assert all(d["decision"] == "accepted" for d in saved.json()["decisions"])
        added = saved.json()["written"]["added"]
        assert "animal" in added and "cat" not in added
        decisions = client.get(f"/api/photos/{photo}/decisions").json()
        assert {d["label"] for d in decisions if d["decision"] == "accepted"} >= set(added)
        assert {a.label for a in read_keywords(folder / "chelsea.jpg").automatic} == set(added)
        assert client.post(f"/api/photos/{photo}/accepted", json={"tags": []}).status_code == 422

    # `phototag untag` takes back everything the page wrote, and only that
    untag(folder / "chelsea.jpg")
    keywords = read_keywords(folder / "chelsea.jpg")
    assert keywords.user == ("Tabby", "cat") and keywords.automatic == ()


def test_unreadable_metadata_is_reported_and_left_alone(tiny_model, tmp_path, folder):  # noqa: F811
    broken = (folder / "coffee.jpg.xmp").read_bytes()
    with _client(tiny_model, tmp_path, folder) as client:
        result = client.post("/api/folder/photos", json={"path": "coffee.jpg"}).json()
        assert result["metadata_error"].startswith("coffee.jpg.xmp: ")
        assert result["existing"] == [] and result["tags"]
        photo = result["photo"]["id"]
        for response in (
            _decide(client, photo, "cup", "accepted", 0.9),
            client.post(f"/api/photos/{photo}/accepted", json={"tags": [{"label": "cup"}]}),
        ):
            assert response.status_code == 422
            detail = response.json()["detail"]
            assert detail.startswith("coffee.jpg.xmp: ") and str(tmp_path) not in detail
        assert client.get(f"/api/photos/{photo}/decisions").json() == []  # nothing stored
    assert (folder / "coffee.jpg.xmp").read_bytes() == broken


def test_a_sidecar_leading_out_of_the_folder_is_refused(tiny_model, tmp_path, folder):  # noqa: F811
    outside = tmp_path / "outside.xmp"
    outside.write_text(USER_SIDECAR)
    (folder / "rocket.jpg.xmp").symlink_to(outside)
    with _client(tiny_model, tmp_path, folder) as client:
        result = client.post("/api/folder/photos", json={"path": "rocket.jpg"}).json()
        assert "outside the served folder" in result["metadata_error"]
        response = _decide(client, result["photo"]["id"], "rocket", "accepted")
        assert response.status_code == 403
        assert client.get("/api/folder", params={"keyword": "tabby"}).json()["total_photos"] == 1
    assert outside.read_text() == USER_SIDECAR


def test_write_none_keeps_folder_photos_untouched(tiny_model, tmp_path, folder):  # noqa: F811
    with _client(tiny_model, tmp_path, folder, write="none") as client:
        assert client.get("/api/info").json()["write"] == "none"
        result = client.post("/api/folder/photos", json={"path": "rocket.jpg"}).json()
        assert result["writes"] is False
        saved = _decide(client, result["photo"]["id"], "rocket", "accepted", 0.9).json()
        assert saved["written"] is None
        assert not (folder / "rocket.jpg.xmp").exists()
        # uploads are the service's own copies: they still get their sidecar
        uploaded = upload(client, "coffee.jpg").json()
        assert uploaded["writes"] is True
        assert _decide(client, uploaded["photo"]["id"], "cup", "accepted").json()["written"]
    with pytest.raises(InvalidInputError, match="--write"):
        ServerConfig(write="embed").validate()  # type: ignore[arg-type]
    with pytest.raises(SystemExit):
        main(["serve", "--write", "embed"])


def test_folder_filter_by_keyword(tiny_model, tmp_path, folder):  # noqa: F811
    with _client(tiny_model, tmp_path, folder, write="none") as client:

        def listed(keyword):
            listing = client.get("/api/folder", params={"keyword": keyword}).json()
            assert listing["total_photos"] == len(listing["photos"])
            return [p["path"] for p in listing["photos"]]

        assert listed("tabby") == ["chelsea.jpg"]  # in its metadata, any case
        assert listed("  Cat ") == ["chelsea.jpg"]
        assert listed("cup") == []
        photo = client.post("/api/folder/photos", json={"path": "rocket.jpg"}).json()["photo"]
        _decide(client, photo["id"], "cup", "accepted")  # accepted here, not written
        assert listed("cup") == ["rocket.jpg"]
        _decide(client, photo["id"], "cup", "rejected")
        assert listed("cup") == []
        assert len(listed("")) == 3  # an empty filter lists everything


def test_uploaded_photo_sidecar_download(tiny_model, tmp_path, folder):  # noqa: F811
    with _client(tiny_model, tmp_path, folder) as client:
        photo = upload(client, "coffee.jpg").json()["photo"]["id"]
        missing = client.get(f"/api/photos/{photo}/sidecar")
        assert missing.status_code == 404 and missing.json()["detail"].startswith("coffee.jpg.xmp")
        saved = _decide(client, photo, "cup", "accepted", 0.8).json()
        assert saved["written"]["file"] == "coffee.jpg.xmp"
        response = client.get(f"/api/photos/{photo}/sidecar")
        assert response.status_code == 200
        assert "coffee.jpg.xmp" in response.headers["content-disposition"]
        assert b"cup" in response.content and NAMESPACE.encode() in response.content
        stored = next(Path(client.app.state.service.uploads).glob("*.jpg.xmp"))
        assert stored.read_bytes() == response.content
        assert client.get("/api/photos/9999/sidecar").status_code == 404


def test_heic_upload_has_a_jpeg_preview(tiny_model, tmp_path, folder):  # noqa: F811
    pillow_heif = pytest.importorskip("pillow_heif", reason="pillow-heif is not installed")
    if not pillow_heif.libheif_info().get("encoders"):
        pytest.skip("this libheif has no HEIF encoder to make a test photo")
    image = Image.open(EXAMPLES / "chelsea.jpg").convert("RGB").resize((96, 64))
    buffer = io.BytesIO()
    pillow_heif.from_pillow(image).save(buffer, quality=60)
    heic = buffer.getvalue()
    (folder / "cat.heic").write_bytes(heic)
    with _client(tiny_model, tmp_path, folder) as client:
        response = client.post("/api/photos", files={"file": ("cat.heic", heic, "image/heic")})
        assert response.status_code == 200, response.text
        photo = response.json()["photo"]["id"]
        for thumb in (
            client.get(f"/api/photos/{photo}/thumbnail", params={"size": 64}),
            client.get("/api/folder/thumbnail", params={"path": "cat.heic", "size": 64}),
        ):
            assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
            assert Image.open(io.BytesIO(thumb.content)).size == (64, 43)
        assert _decide(client, photo, "cat", "accepted").json()["written"]["file"] == (
            "cat.heic.xmp"
        )
    database = tmp_path / "data" / "feedback.sqlite"
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT label FROM decisions").fetchall() == [("cat",)]
