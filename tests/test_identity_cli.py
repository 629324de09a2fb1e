"""`faceonly gallery keygen/build/delta` on real photos with the shipped models; identification CSVs."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from device.cli import main
from device.identity import gallery as gal
from device.identity import operator as op
from device.infra.modelstore import ModelStore
from faceonly_lab.lfwsets import write_identification_csv
from tests.vision_helpers import model_store

LFW = "verification/lfw/lfw-deepfunneled"


def _photos(shared_data, tmp_path):
    photos = tmp_path / "photos"
    for sid, person in (("colin", "Silvio_Berlusconi"), ("tony", "Tony_Blair")):
        (photos / sid).mkdir(parents=True)
        for n, src in enumerate(sorted((shared_data / LFW / person).glob("*.jpg"))[:2], start=1):
            shutil.copy(src, photos / sid / f"{n}.jpg")
    (photos / "colin" / "display_name.txt").write_text("Colin P.\n")
    (photos / "nobody").mkdir()
    shutil.copy(shared_data / "negatives/dlib_giraffe.jpg", photos / "nobody" / "giraffe.jpg")
    shutil.copy(shared_data / "detection/multi_face/fr_two_people.jpg", photos / "tony" / "two.jpg")
    (photos / "tony" / "broken.jpg").write_bytes(b"\xff\xd8not a jpeg")
    return photos


def test_gallery_build_refuses_bad_photos_by_name_and_signs_the_rest(shared_data, tmp_path, capsys):
    model_store()
    photos = _photos(shared_data, tmp_path)
    assert main(["gallery", "keygen", "--out", str(tmp_path / "g.key")]) == 0
    assert main(["gallery", "keygen", "--out", str(tmp_path / "g.key")]) == 1  # never replaced
    report = tmp_path / "report.json"
    out = tmp_path / "v1.fog"
    code = main(
        [
            "gallery",
            "build",
            "--photos",
            str(photos),
            "--key",
            str(tmp_path / "g.key"),
            "--out",
            str(out),
            "--report",
            str(report),
        ]
    )
    err = capsys.readouterr().err
    assert code == 0, err
    assert "nobody/giraffe.jpg: no_face" in err
    assert "tony/two.jpg: two_faces" in err
    assert "tony/broken.jpg: unreadable" in err
    statuses = {(r["subject"], r["file"]): r["status"] for r in json.loads(report.read_text())}
    assert statuses[("colin", "1.jpg")] == statuses[("tony", "2.jpg")] == "ok"
    update = op.read_update(out)
    embedder = ModelStore().entry("embedder")
    from device.contracts import ModelRef

    model = ModelRef("embedder", embedder.file, embedder.sha256)
    key = op.read_public_key(tmp_path / "g.key.pub")
    manifest = gal.check_manifest(update.manifest, key, model)
    v1 = gal.apply(manifest, update.body, None, model)
    assert [s.id for s in v1.subjects] == ["colin", "tony"]
    assert v1.subject("colin").display_name == "Colin P."
    # tony's two good photos made one mean template (the default), signed as a mean of 2.
    tony = v1.subject("tony")
    assert len(tony.templates) == 1 and tony.averaged == 2
    each = tmp_path / "each.fog"
    args = ["gallery", "build", "--photos", str(photos), "--key", str(tmp_path / "g.key"), "--out", str(each)]
    assert main([*args, "--templates", "each"]) == 0
    e = op.read_update(each)
    tony_each = gal.apply(gal.check_manifest(e.manifest, key, model), e.body, None, model).subject("tony")
    assert len(tony_each.templates) == 2 and tony_each.averaged == 1
    mean = tony_each.templates.mean(axis=0)
    assert np.allclose(tony.templates[0], mean / np.linalg.norm(mean), atol=1e-6)

    code = main(
        [
            "gallery",
            "delta",
            "--base",
            str(out),
            "--key",
            str(tmp_path / "g.key"),
            "--out",
            str(tmp_path / "v2.fog"),
            "--remove",
            "tony",
        ]
    )
    assert code == 0
    d = op.read_update(tmp_path / "v2.fog")
    v2 = gal.apply(gal.check_manifest(d.manifest, key, model), d.body, v1, model)
    assert [s.id for s in v2.subjects] == ["colin"] and v2.version == 2


def test_gallery_build_without_usable_photos_fails(shared_data, tmp_path, capsys):
    model_store()
    (tmp_path / "photos" / "nobody").mkdir(parents=True)
    shutil.copy(shared_data / "negatives/dlib_giraffe.jpg", tmp_path / "photos" / "nobody" / "g.jpg")
    op.keygen(tmp_path / "g.key")
    code = main(
        [
            "gallery",
            "build",
            "--photos",
            str(tmp_path / "photos"),
            "--key",
            str(tmp_path / "g.key"),
            "--out",
            str(tmp_path / "v1.fog"),
        ]
    )
    assert code == 1 and "no subject has a usable photo" in capsys.readouterr().err
    assert not (tmp_path / "v1.fog").exists()


def test_identification_csv_errors_name_the_line(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("path,subject,role\na.jpg,ann,gallery\nb.jpg,bob,judge\n")
    assert main(["evaluate", "--identification", str(bad)]) == 1
    assert "line 3: role must be gallery or probe" in capsys.readouterr().err


@pytest.mark.parametrize("g,known_min", [(1, 1700), (3, 600)])
def test_lfw_identification_csvs(shared_data, tmp_path, g, known_min):
    pairs = shared_data / "verification/lfw/pairs_view2_local.csv"
    counts = write_identification_csv(pairs, tmp_path / "x.csv", g)
    assert counts["rows"] == 3811 and counts["gallery_photos"] == g * counts["gallery_subjects"]
    assert counts["known_probes"] >= known_min and counts["unknown_probes"] > 1000
    a = write_identification_csv(pairs, tmp_path / "a.csv", g, "a")
    b = write_identification_csv(pairs, tmp_path / "b.csv", g, "b")
    assert a["rows"] + b["rows"] == 3811
    names_a = {line.split(",")[1] for line in (tmp_path / "a.csv").read_text().splitlines()[1:]}
    names_b = {line.split(",")[1] for line in (tmp_path / "b.csv").read_text().splitlines()[1:]}
    assert not names_a & names_b  # disjoint identities: calibrate on one, measure on the other


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.text(max_size=8), st.text(max_size=8), st.text(max_size=8)), max_size=5))
def test_identification_csv_parser_accepts_or_names_the_problem(tmp_path_factory, rows):
    import csv

    from faceonly_lab.identification import read_identification_csv

    path = tmp_path_factory.mktemp("csv") / "x.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "subject", "role"])
        writer.writerows(rows)
    try:
        parsed = read_identification_csv(path)
    except ValueError as exc:
        assert str(path) in str(exc)
        return
    assert all(r.role in ("gallery", "probe") and r.subject for r in parsed)
