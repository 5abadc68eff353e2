"""The model store on real files with the real tiny bundle: add (and add again), list, promote,
rollback, remove, the disk budget and the history of who did what."""

from __future__ import annotations

import json
import stat

import pytest

from edge_inspect.modelstore import ModelStore, ModelStoreError
from edge_inspect.vlm.bundle import BundleError, load_bundle_files, sha256_file

from .helpers import other_version


@pytest.fixture
def store(tmp_path) -> ModelStore:
    return ModelStore(tmp_path / "data" / "models")


def test_add_copies_a_read_only_version_named_by_the_manifest_sha256(store, tiny_bundle):
    added = store.add(tiny_bundle, "alice")
    v = added.version
    assert added.new and v.id == sha256_file(tiny_bundle / "manifest.json") == load_bundle_files(tiny_bundle).sha256
    assert v.path == store.folder / "versions" / v.id
    assert load_bundle_files(v.path).sha256 == v.id  # the copy verifies: every file with its size and sha256
    info = json.loads((v.path / "version.json").read_text())
    assert info["added_by"] == "alice" and info["source"] == str(tiny_bundle.resolve()) and info["parent"] is None
    assert info["bytes"] == v.size > 0 and info["gate"] is None and info["added_at"].endswith("Z")
    assert not stat.S_IMODE(v.path.stat().st_mode) & 0o222
    assert all(not stat.S_IMODE(p.stat().st_mode) & 0o222 for p in v.path.iterdir())
    assert [v.id for v in store.versions()] == [v.id]


def test_adding_the_same_bundle_again_names_the_version_and_copies_nothing(store, tiny_bundle):
    first = store.add(tiny_bundle, "alice").version
    mtime = (first.path / "version.json").stat().st_mtime_ns
    again = store.add(tiny_bundle, "bob")
    assert not again.new and again.version.id == first.id
    assert (first.path / "version.json").stat().st_mtime_ns == mtime  # version.json (added_by alice) untouched
    assert len(store.versions()) == 1
    assert [h["action"] for h in store.state()["history"]] == ["add"]


def test_a_bundle_that_does_not_verify_is_not_added(store, bundle_copy):
    with (bundle_copy / "vision.onnx").open("ab") as f:
        f.write(b"x")
    with pytest.raises(BundleError, match="vision.onnx: wrong size"):
        store.add(bundle_copy, "alice")
    assert store.versions() == []


def test_promote_rollback_and_the_history(store, tiny_bundle, tmp_path):
    a = store.add(tiny_bundle, "alice", alias="production").version
    b = store.add(
        other_version(tiny_bundle, tmp_path / "b", "b"), "bob", parent="production", alias="candidate"
    ).version
    assert b.info["parent"] == a.id
    assert store.aliases() == {"production": a.id, "candidate": b.id}
    assert store.find("candidate").id == b.id and store.find(b.id[:8]).id == b.id

    promoted, previous = store.promote("candidate", "carol")
    assert promoted.id == b.id and previous == a.id and store.aliases()["production"] == b.id

    back, replaced = store.rollback("dave")
    assert back.id == a.id and replaced == b.id and store.aliases()["production"] == a.id
    with pytest.raises(ModelStoreError, match="no earlier production"):
        store.rollback("dave")  # the first production has none before it

    history = store.state()["history"]
    assert [(h["action"], h["by"]) for h in history] == [
        ("add", "alice"), ("promote", "alice"), ("add", "bob"), ("promote", "bob"),
        ("promote", "carol"), ("rollback", "dave"),
    ]  # fmt: skip
    assert history[-1] == {**history[-1], "alias": "production", "version": a.id, "previous": b.id}
    assert all(h["at"].endswith("Z") for h in history)


def test_rollback_goes_back_through_the_productions_before(store, tiny_bundle, tmp_path):
    ids = [store.add(other_version(tiny_bundle, tmp_path / n, n), "u", alias="production").version.id for n in "abc"]
    assert store.rollback("u")[0].id == ids[1]
    assert store.rollback("u")[0].id == ids[0]


def test_remove_refuses_a_version_an_alias_names(store, tiny_bundle, tmp_path):
    a = store.add(tiny_bundle, "u", alias="production").version
    b = store.add(other_version(tiny_bundle, tmp_path / "b", "b"), "u", alias="candidate").version
    with pytest.raises(ModelStoreError, match=f"version {a.id[:12]} is production: promote another version first"):
        store.remove(a.id[:10], "u")
    with pytest.raises(ModelStoreError, match="is candidate"):
        store.remove(b.id, "u")
    with pytest.raises(ModelStoreError, match="not the alias production"):
        store.remove("production", "u")
    assert {v.id for v in store.versions()} == {a.id, b.id}
    store.promote(a.id, "u", to="candidate")  # b is named by no alias now
    removed = store.remove(b.id[:8], "u")
    assert removed.id == b.id and not removed.path.exists() and [v.id for v in store.versions()] == [a.id]
    assert store.state()["history"][-1]["action"] == "remove"
    with pytest.raises(ModelStoreError, match=f"no model version {b.id[:8]}"):
        store.find(b.id[:8])


def test_unknown_names_and_unset_aliases_are_one_line(store, tiny_bundle):
    with pytest.raises(ModelStoreError, match="no version is production") as err:
        store.find("production")
    assert "\n" not in str(err.value)
    with pytest.raises(ModelStoreError, match="names no model version"):
        store.find("abc")  # shorter than 8 hex digits
    with pytest.raises(ModelStoreError, match="no model version deadbeef"):
        store.find("deadbeef")


def test_an_add_over_the_disk_budget_is_refused_naming_the_sizes(tmp_path, tiny_bundle):
    size = load_bundle_files(tiny_bundle).info.files
    total = sum(e.bytes for e in size.values())
    store = ModelStore(tmp_path / "models", max_bytes=total * 1.5)
    store.add(tiny_bundle, "u")
    with pytest.raises(
        ModelStoreError, match=r"would take the model store to .* MB, over its budget storage.models_max_mb"
    ) as err:
        store.add(other_version(tiny_bundle, tmp_path / "b", "b"), "u")
    assert "\n" not in str(err.value) and "remove a version first" in str(err.value)
    assert len(store.versions()) == 1
    assert not [p for p in store.versions_dir.iterdir() if p.name.startswith(".")]  # nothing half-copied left


def test_what_a_cut_short_add_left_is_cleared_by_the_next_change(store, tiny_bundle):
    half = store.versions_dir / ".incoming-abc-1"
    (half / "sub").mkdir(parents=True)
    (half / "sub" / "vision.onnx").write_bytes(b"half")
    (half / "sub").chmod(0o555)
    assert store.versions() == []  # never taken for a version
    store.add(tiny_bundle, "u")
    assert not half.exists() and len(store.versions()) == 1
