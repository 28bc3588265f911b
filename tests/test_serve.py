"""`phototag serve`: the REST API, its security rules and the page (FastAPI TestClient)."""

import json
import os
import re
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from phototag.app.cli import main
from phototag.app.server import STATIC, ServerConfig, create_app
from phototag.app.web.files import open_beneath
from phototag.app.web.security import RequestRefused, is_loopback, token_matches, upload_format
from phototag.app.web.tagger import PhotoUnreadable, Tagger
from phototag.data import from_label_sets
from phototag.errors import InvalidInputError
from phototag.features.encoders import create_encoder
from phototag.imaging import load_image
from phototag.models import create_annotator
from phototag.pretrained import load_model

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TOKEN = "s3cret-token-for-tests-0123456789"
LOCAL = "http://localhost"
#: What the page sends with every request (the service refuses changes without it).
PAGE_HEADERS = {"X-Phototag": "1"}


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    """JEC on EfficientNet-Lite0 features of the four example photos (seconds to build)."""
    names = ["chelsea", "coffee", "astronaut", "rocket"]
    encoder = create_encoder("efficientnet_lite0", runtime="torch")
    features = encoder.encode([load_image(EXAMPLES / f"{n}.jpg") for n in names])
    labels = [["cat", "animal"], ["coffee", "cup"], ["person", "space"], ["rocket", "sky"]]
    train = from_label_sets("examples", names, labels,
                            features={"efficientnet_lite0": np.asarray(features)})  # fmt: skip
    model = create_annotator("jec", features="efficientnet_lite0", k=1).fit(train)
    return str(model.save(tmp_path_factory.mktemp("serve") / "model"))


def serve_config(model: str, root: Path, **options) -> ServerConfig:
    defaults = dict(data_dir=root / "data", store=root / "store", runtime="torch")
    return ServerConfig(model=model, **{**defaults, **options})


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    """A served folder with a subfolder, and traps: links leading out of it."""
    root = tmp_path_factory.mktemp("library")
    folder = root / "photos"
    (folder / "sub").mkdir(parents=True)
    (folder / "chelsea.jpg").write_bytes((EXAMPLES / "chelsea.jpg").read_bytes())
    (folder / "sub" / "coffee.jpg").write_bytes((EXAMPLES / "coffee.jpg").read_bytes())
    (folder / "notes.txt").write_text("not a photo")
    secret = root / "secret"
    secret.mkdir()
    (secret / "private.jpg").write_bytes((EXAMPLES / "rocket.jpg").read_bytes())
    (folder / "link.jpg").symlink_to(secret / "private.jpg")
    (folder / "linkdir").symlink_to(secret)
    (folder / "inside.jpg").symlink_to(folder / "chelsea.jpg")
    return folder


@pytest.fixture(scope="module")
def client(tiny_model, library, tmp_path_factory):
    root = tmp_path_factory.mktemp("service")
    app = create_app(serve_config(tiny_model, root, folder=library))
    with TestClient(app, base_url=LOCAL, headers=PAGE_HEADERS) as test_client:
        yield test_client


def upload(client, name="chelsea.jpg", data=None, **kwargs):
    body = (EXAMPLES / name).read_bytes() if data is None else data
    return client.post("/api/photos", files={"file": (name, body, "image/jpeg")}, **kwargs)


# ------------------------------------------------------------------ photos
def test_upload_suggests_ranked_tags(client):
    response = upload(client)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["photo"]["name"] == "chelsea.jpg" and result["photo"]["source"] == "upload"
    labels = [t["label"] for t in result["tags"]]
    scores = [t["score"] for t in result["tags"]]
    assert scores == sorted(scores, reverse=True) and len(labels) == 5  # JEC decodes top 5
    assert set(labels[:2]) == {"cat", "animal"}  # its own neighbour comes first
    assert all(t["decision"] is None for t in result["tags"])
    again = upload(client, data=(EXAMPLES / "chelsea.jpg").read_bytes())
    assert again.json()["photo"]["id"] == result["photo"]["id"]  # same bytes, same photo
    top2 = client.get(f"/api/photos/{result['photo']['id']}/suggestions", params={"top_k": 2})
    assert [t["label"] for t in top2.json()["tags"]] == labels[:2]
    assert client.get("/api/photos/9999/suggestions").status_code == 404


def test_decisions_are_stored(client):
    result = upload(client, "coffee.jpg").json()
    photo = result["photo"]["id"]
    cup = next(t for t in result["tags"] if t["label"] == "cup")
    decide = f"/api/photos/{photo}/decisions"
    assert client.post(decide, json={"label": "cup", "decision": "accepted",
                                     "score": cup["score"]}).status_code == 200  # fmt: skip
    assert client.post(decide, json={"label": "sky", "decision": "rejected"}).status_code == 200
    own = client.post(decide, json={"label": "  espresso   cup ", "decision": "accepted"})
    assert own.json()["label"] == "espresso cup" and own.json()["score"] is None
    assert client.post(decide, json={"label": "x", "decision": "maybe"}).status_code == 422
    assert client.post(decide, json={"label": "   ", "decision": "accepted"}).status_code == 422
    assert client.post("/api/photos/9999/decisions",
                       json={"label": "x", "decision": "accepted"}).status_code == 404  # fmt: skip
    listed = {d["label"]: d["decision"] for d in client.get(decide).json()}
    assert listed == {"cup": "accepted", "sky": "rejected", "espresso cup": "accepted"}
    shown = {t["label"]: t["decision"] for t in upload(client, "coffee.jpg").json()["tags"]}
    assert shown["cup"] == "accepted"
    # what `phototag train --feedback` reads
    database = Path(client.app.state.service.feedback.path)
    with sqlite3.connect(database) as db:
        rows = db.execute(
            "SELECT p.name, p.source, d.label, d.decision, d.score FROM decisions d "
            "JOIN photos p ON p.id = d.photo_id WHERE p.id = ? ORDER BY d.label",
            (photo,),
        ).fetchall()
    assert rows == [("coffee.jpg", "upload", "cup", "accepted", pytest.approx(cup["score"])),
                    ("coffee.jpg", "upload", "espresso cup", "accepted", None),
                    ("coffee.jpg", "upload", "sky", "rejected", None)]  # fmt: skip


def test_photo_thumbnail(client):
    photo = upload(client, "rocket.jpg").json()["photo"]["id"]
    response = client.get(f"/api/photos/{photo}/thumbnail", params={"size": 64})
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    assert response.content[:3] == b"\xff\xd8\xff"
    assert client.get(f"/api/photos/{photo}/thumbnail", params={"size": 5000}).status_code == 422


def test_upload_type_and_decode_errors(client):
    uploads = Path(client.app.state.service.uploads)
    before = set(uploads.iterdir())
    text = client.post("/api/photos", files={"file": ("notes.txt", b"hello", "text/plain")})
    assert text.status_code == 415
    assert "notes.txt: not a supported image" in text.json()["detail"]
    assert "JPEG" in text.json()["detail"] and "text/plain" in text.json()["detail"]
    broken = upload(client, "broken.jpg", data=b"\xff\xd8\xff\xe0" + b"\x00" * 100)
    assert broken.status_code == 422 and broken.json()["detail"].startswith("broken.jpg: ")
    assert set(uploads.iterdir()) == before  # nothing unreadable is kept
    assert client.post("/api/photos").status_code == 422  # no file part


def test_openapi_and_docs_work_offline(client):
    schema = client.get("/openapi.json").json()
    for path in ("/api/photos", "/api/photos/{photo_id}/decisions", "/api/folder",
                 "/api/folder/photos", "/api/info"):  # fmt: skip
        assert path in schema["paths"]
    assert {"Suggestions", "DecisionIn", "Decision", "FolderListing"} <= set(
        schema["components"]["schemas"]
    )
    assert "HTTPBearer" in schema["components"]["securitySchemes"]
    upload_doc = schema["paths"]["/api/photos"]["post"]["responses"]
    assert {"200", "413", "415"} <= set(upload_doc)
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/docs-assets/swagger-ui-bundle.js" in docs.text
    assert not re.search(r"(src|href)=[\"']https?://", docs.text)
    assert client.get("/docs-assets/swagger-ui-bundle.js").status_code == 200


def test_page_is_self_contained(client):
    page = client.get("/")
    assert page.status_code == 200 and "<title>phototag</title>" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for name in ("index.html", "app.js", "style.css"):
        text = (STATIC / name).read_text()
        assert not re.search(r"https?://", text), f"{name} refers to another site"
        assert client.get("/" if name == "index.html" else f"/static/{name}").status_code == 200


def test_info(client, tiny_model):
    info = client.get("/api/info").json()
    assert info["model"] == tiny_model and info["labels"] == 8 and info["folder"] is True
    assert info["token_required"] is False and "JPEG" in info["upload_formats"]


# ----------------------------------------------------------------- folder
def test_folder_listing_hides_ways_out(client):
    listing = client.get("/api/folder").json()
    assert listing["parent"] is None and listing["path"] == ""
    assert [f["path"] for f in listing["folders"]] == ["sub"]
    assert [p["path"] for p in listing["photos"]] == ["chelsea.jpg", "inside.jpg"]
    sub = client.get("/api/folder", params={"path": "sub"}).json()
    assert sub["parent"] == "" and [p["path"] for p in sub["photos"]] == ["sub/coffee.jpg"]
    page = client.get("/api/folder", params={"limit": 1, "offset": 1}).json()
    assert [p["name"] for p in page["photos"]] == ["inside.jpg"] and page["total_photos"] == 2


def test_folder_photo_suggestions(client, library):
    response = client.post("/api/folder/photos", json={"path": "sub/../sub/coffee.jpg"})
    assert response.status_code == 200
    result = response.json()
    assert result["photo"] == {"id": result["photo"]["id"], "name": "sub/coffee.jpg",
                               "source": "folder"}  # fmt: skip
    assert {"coffee", "cup"} == {t["label"] for t in result["tags"][:2]}
    thumb = client.get("/api/folder/thumbnail", params={"path": "inside.jpg", "size": 32})
    assert thumb.status_code == 200 and thumb.content[:2] == b"\xff\xd8"


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("../secret/private.jpg", 403),
        ("sub/../../secret/private.jpg", 403),
        ("..", 403),
        ("link.jpg", 403),  # a symlink pointing out
        ("linkdir/private.jpg", 403),  # through a symlinked folder
        ("/etc/passwd", 400),
        ("\\etc\\passwd", 400),  # backslashes are not separators: refused
        ("C:/Windows/win.ini", 400),
        ("notes.txt", 400),  # inside, but not a photo
        ("missing.jpg", 404),
    ],
)
def test_folder_paths_outside_are_refused(client, library, path, status):
    assert client.get("/api/folder/thumbnail", params={"path": path}).status_code == status
    response = client.post("/api/folder/photos", json={"path": path})
    assert response.status_code == status
    if status == 403:
        assert "outside the served folder" in response.json()["detail"]
    listing = client.get("/api/folder", params={"path": path})
    assert listing.status_code in (400, 403, 404) and "photos" not in listing.json()


def test_absolute_path_to_a_real_photo_is_refused(client, library):
    for path in (str(library / "chelsea.jpg"), str(library.parent / "secret" / "private.jpg")):
        assert client.get("/api/folder/thumbnail", params={"path": path}).status_code == 400
        assert client.get("/api/folder", params={"path": str(library)}).status_code == 400


def test_open_beneath(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "x.jpg").write_bytes(b"x")
    (tmp_path / "a" / "loop").symlink_to(tmp_path / "a" / "loop")
    (tmp_path / "a" / "b" / "up").symlink_to("../x.jpg")  # relative, stays inside
    root = (tmp_path / "a").resolve()
    for path, reached in [(b"x.jpg", b"x.jpg"), (b"./x.jpg", b"x.jpg"), (b"b/../x.jpg", b"x.jpg"),
                          (b"b/up", b"x.jpg"), (b"b//./up", b"x.jpg")]:  # fmt: skip
        with open_beneath(root, path, "p") as opened:
            assert opened.path == reached and not opened.is_dir
            assert os.read(opened.fd, 1) == b"x"
    with open_beneath(root, b"b/..", "p") as opened:
        assert opened.is_dir and opened.path == b""
    for bad, status in [(b"../a/x.jpg", 403), (b"..", 403), (b"loop", 404), (b"nope", 404),
                        (b"x.jpg/more", 404)]:  # fmt: skip
        with pytest.raises(RequestRefused) as caught:
            open_beneath(root, bad, "p")
        assert caught.value.status == status, bad


def test_no_folder_served(tiny_model, tmp_path):
    app = create_app(serve_config(tiny_model, tmp_path))
    with TestClient(app, base_url=LOCAL, headers=PAGE_HEADERS) as plain:
        assert plain.get("/api/folder").status_code == 404
        assert "--folder" in plain.get("/api/folder").json()["detail"]
        assert plain.post("/api/folder/photos", json={"path": "a.jpg"}).status_code == 404


# ---------------------------------------------------------------- security
def test_non_local_host_needs_a_strong_token(tiny_model, tmp_path):
    for host in ("0.0.0.0", "192.168.1.5", "::", "example.org"):
        with pytest.raises(InvalidInputError, match="--token"):
            create_app(serve_config(tiny_model, tmp_path, host=host))
    with pytest.raises(InvalidInputError, match="has only 5 characters"):
        ServerConfig(host="0.0.0.0", token="short").validate()
    ServerConfig(host="0.0.0.0", token=TOKEN).validate()
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        ServerConfig(host=host).validate()
        assert is_loopback(host)
    assert not is_loopback("0.0.0.0") and not is_loopback("localhost.example.org")


def test_serve_command_refuses_to_start_exposed_without_token(tiny_model, capsys, monkeypatch):
    monkeypatch.delenv("PHOTOTAG_TOKEN", raising=False)
    assert main(["serve", "--host", "0.0.0.0", "--model", tiny_model]) == 1
    assert "--token" in capsys.readouterr().err


def test_token_is_checked_on_every_api_call(tiny_model, tmp_path):
    config = serve_config(tiny_model, tmp_path, host="0.0.0.0", token=TOKEN,
                          max_upload_bytes=40_000)  # fmt: skip
    with TestClient(create_app(config), base_url="http://192.168.1.5:8000") as remote:
        # without the page's header and without the token: the token is asked for first
        calls = [("GET", "/api/info"), ("GET", "/api/folder"), ("POST", "/api/photos"),
                 ("GET", "/api/photos/1/thumbnail"), ("POST", "/api/photos/1/decisions"),
                 ("GET", "/api/no-such-endpoint")]  # fmt: skip
        for method, path in calls:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN},
                            {"Authorization": f"Basic {TOKEN}"}):  # fmt: skip
                response = remote.request(method, path, headers=headers)
                assert response.status_code == 401, (method, path, headers)
                assert response.headers["www-authenticate"] == "Bearer"
        auth = {"Authorization": f"Bearer {TOKEN}", **PAGE_HEADERS}
        info = remote.get("/api/info", headers=auth).json()
        assert info["token_required"] is True
        assert remote.get("/").status_code == 200  # the page itself holds no data
        # size limit (413) applies with the token; the body is never read
        big = remote.post(
            "/api/photos",
            headers=auth,
            files={"file": ("big.jpg", b"\xff\xd8\xff" + b"0" * 200_000)},
        )
        assert big.status_code == 413 and "upload too large" in big.json()["detail"]
        tiny = (EXAMPLES / "coffee.jpg").read_bytes()
        assert len(tiny) > 40_000
        over = remote.post("/api/photos", headers=auth, files={"file": ("c.jpg", tiny)})
        assert over.status_code == 413
        form = {**auth, "Content-Type": "multipart/form-data"}
        chunked = remote.post("/api/photos", headers=form, content=iter([b"--x\r\n", b"data"]))
        assert chunked.status_code == 411 and "Content-Length" in chunked.json()["detail"]


def test_upload_limit_on_the_file_itself(tiny_model, tmp_path):
    """The file is checked too, not only the request size (the limit is in MiB)."""
    limit = 30_000
    config = serve_config(tiny_model, tmp_path, max_upload_bytes=limit)
    with TestClient(create_app(config), base_url=LOCAL, headers=PAGE_HEADERS) as local:
        body = b"\xff\xd8\xff" + b"0" * (limit + 10)  # request within the framing allowance
        response = upload(local, "big.jpg", data=body)
        assert response.status_code == 413 and "MiB" in response.json()["detail"]


def test_local_service_refuses_foreign_host_names(client):
    """DNS rebinding: a page on another site must not reach a localhost service."""
    assert client.get("/api/info", headers={"Host": "evil.example:8000"}).status_code == 400
    assert client.get("/", headers={"Host": "attacker.test"}).status_code == 400
    for host in ("localhost:8000", "127.0.0.1:8000", "[::1]:8000", "localhost"):
        assert client.get("/api/info", headers={"Host": host}).status_code == 200, host


def test_token_matches():
    assert token_matches(f"Bearer {TOKEN}", TOKEN)
    assert token_matches(f"bearer  {TOKEN} ", TOKEN)
    assert not token_matches(f"Bearer {TOKEN}x", TOKEN)
    assert not token_matches(None, TOKEN) and not token_matches(TOKEN, TOKEN)


def test_upload_format_by_content():
    assert upload_format((EXAMPLES / "chelsea.jpg").read_bytes()[:32]) == "JPEG"
    assert upload_format(b"\x89PNG\r\n\x1a\n" + b"\x00" * 8) == "PNG"
    assert upload_format(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "WebP"
    assert upload_format(b"\x00\x00\x00\x18ftypheic\x00\x00") == "HEIC"
    assert upload_format(b"<svg xmlns=...>") is None
    assert upload_format(b"GIF89a" + b"\x00" * 10) == "GIF"


# ------------------------------------------------------------- concurrency
def test_tagger_batches_concurrent_photos(tiny_model, tmp_path):
    model = load_model(tiny_model)
    tagger = Tagger(model, store_root=tmp_path / "store", runtime="torch", max_batch=8)
    try:
        names = ["chelsea", "coffee", "astronaut", "rocket"] * 3
        futures = [tagger.submit(EXAMPLES / f"{n}.jpg") for n in names]
        results = [f.result(timeout=120).scores[0] for f in futures]
        for name, scores in zip(names, results, strict=True):
            assert scores.shape == (len(model.vocabulary_),)
            np.testing.assert_allclose(scores, results[names.index(name)], rtol=1e-5)
        assert not np.allclose(results[0], results[1])
        (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff" + b"\x00" * 64)
        with pytest.raises(PhotoUnreadable, match="bad.jpg"):
            tagger.submit(tmp_path / "bad.jpg").result(timeout=60)
    finally:
        tagger.close()
    with pytest.raises(RuntimeError, match="closed"):
        tagger.submit(EXAMPLES / "chelsea.jpg")


def test_concurrent_clients(client):
    """Many requests at once: every one answered, none failed (inference off the loop)."""
    names = ["chelsea.jpg", "coffee.jpg", "astronaut.jpg", "rocket.jpg"] * 4
    statuses: list[int] = []
    lock = threading.Lock()

    def send(name):
        response = upload(client, name)
        with lock:
            statuses.append(response.status_code)

    threads = [threading.Thread(target=send, args=(n,)) for n in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert statuses == [200] * len(names)


def test_data_folder_default(monkeypatch, tmp_path):
    from phototag.library.feedback import default_data_dir

    monkeypatch.setenv("PHOTOTAG_DATA", str(tmp_path / "d"))
    assert default_data_dir() == tmp_path / "d"
    monkeypatch.delenv("PHOTOTAG_DATA")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_data_dir() == tmp_path / "xdg" / "phototag"
    assert json.loads(json.dumps(os.fspath(default_data_dir())))


def test_serve_with_a_vocabulary_suggests_only_its_words(tiny_model, tmp_path):
    """`serve --vocabulary FILE`: the user's words, scored as `annotate --vocabulary` does
    (open vocabulary, raised to the trained model's score where it knows the word)."""
    words = tmp_path / "words.txt"
    words.write_text("cat\ncoffee\nrocket\n")
    app = create_app(serve_config(tiny_model, tmp_path, vocabulary=words))
    with TestClient(app, base_url=LOCAL, headers=PAGE_HEADERS) as test_client:
        info = test_client.get("/api/info").json()
        assert info["labels"] == 3 and info["model"].endswith("+ words.txt")
        tags = upload(test_client).json()["tags"]
    labels = [t["label"] for t in tags]
    assert labels and set(labels) <= {"cat", "coffee", "rocket"} and labels[0] == "cat"
