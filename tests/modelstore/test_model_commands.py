"""`edge-inspect model list | add | promote | rollback | remove` and station.yaml naming an alias or a
version, through the real command line: one line and exit 2 for each refusal."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from edge_inspect.config import load_config
from edge_inspect.modelstore import ModelStore

from ..support.stations import write_station
from .helpers import other_version


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "edge_inspect.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def _line(path: Path, key: str) -> int:
    return next(i for i, text in enumerate(path.read_text().splitlines(), 1) if text.strip().startswith(f"{key}:"))


def test_the_model_commands_end_to_end(tmp_path, tiny_bundle):
    config = write_station(tmp_path, Path("production"), storage={"dir": "data"})  # storage.dir relative to it
    b = other_version(tiny_bundle, tmp_path / "b", "b")

    listed = _cli("model", "list", "--config", str(config), cwd=tmp_path)
    assert listed.returncode == 0 and "no model versions" in listed.stdout

    added = _cli(
        "model", "add", str(tiny_bundle), "--as", "production", "--user", "alice", "--config", str(config), cwd=tmp_path
    )
    assert added.returncode == 0, added.stderr
    a_id = ModelStore(tmp_path / "data" / "models").aliases()["production"]
    assert added.stdout.strip() == f"added version {a_id} ({added.stdout.split('(')[1].split(')')[0]}), now production"

    again = _cli("model", "add", str(tiny_bundle), "--config", str(config), cwd=tmp_path)
    assert again.returncode == 0 and again.stdout.strip() == f"already stored as version {a_id}; nothing copied"

    added = _cli(
        "model", "add", str(b), "--as", "candidate", "--parent", "production", "--config", str(config), cwd=tmp_path
    )
    assert added.returncode == 0, added.stderr
    b_id = ModelStore(tmp_path / "data" / "models").aliases()["candidate"]

    listed = _cli("model", "list", "--config", str(config), cwd=tmp_path)
    lines = listed.stdout.splitlines()
    assert listed.returncode == 0 and len(lines) == 3, listed.stdout
    assert lines[0].startswith(f"{a_id[:12]}  production") and "by alice" in lines[0]
    assert lines[1].startswith(f"{b_id[:12]}  candidate") and f"parent {a_id[:12]}" in lines[1]
    assert lines[2].startswith("2 version(s)") and "budget 20,480.0 MB" in lines[2]

    refused = _cli("model", "promote", "candidate", "--user", "carol", "--config", str(config), cwd=tmp_path)
    assert refused.returncode == 2 and refused.stdout == ""  # no gate against production: an override is asked for
    assert refused.stderr == (
        f"edge-inspect: error: version {b_id[:12]} has no gate result: run edge-inspect model gate {b_id[:12]}, "
        "or promote with --force\n"
    )
    promoted = _cli(
        "model", "promote", "candidate", "--force", "--user", "carol", "--config", str(config), cwd=tmp_path
    )
    assert promoted.returncode == 0 and promoted.stdout.startswith(f"forced: version {b_id[:12]} has no gate result")
    assert f"production is version {b_id} (was {a_id[:12]})" in promoted.stdout
    assert load_config(config)[0].model.bundle == str(tmp_path / "data" / "models" / "versions" / b_id)

    refused = _cli("model", "remove", b_id[:8], "--config", str(config), cwd=tmp_path)
    assert refused.returncode == 2 and refused.stdout == ""
    assert (
        refused.stderr
        == f"edge-inspect: error: version {b_id[:12]} is candidate and production: promote another version first\n"
    )

    rolled = _cli("model", "rollback", "--user", "dave", "--config", str(config), cwd=tmp_path)
    assert rolled.returncode == 0 and rolled.stdout.startswith(f"production is version {a_id} again (was {b_id[:12]})")
    assert load_config(config)[0].model.bundle == str(tmp_path / "data" / "models" / "versions" / a_id)

    refused = _cli("model", "rollback", "--config", str(config), cwd=tmp_path)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "no earlier production" in refused.stderr

    entries = ModelStore(tmp_path / "data" / "models").state()["history"]
    assert entries[4]["forced"] == f"version {b_id[:12]} has no gate result"  # the override, in the audit
    history = [(h["action"], h["by"]) for h in entries]
    somebody = history[2][1]  # no --user: $USER (or the login name)
    assert somebody and history == [
        ("add", "alice"), ("promote", "alice"), ("add", somebody), ("promote", somebody),
        ("promote", "carol"), ("rollback", "dave"),
    ]  # fmt: skip


def test_an_unset_alias_or_unknown_version_in_station_yaml_is_one_line_naming_the_key(tmp_path, tiny_bundle):
    config = write_station(tmp_path, Path("production"))
    result = _cli("config", "validate", str(config), cwd=tmp_path)
    line = _line(config, "bundle")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith(
        f"{config}:{line}: model.bundle: no version is production in {tmp_path / 'data' / 'models'}"
    )
    assert result.stderr.count("\n") == 1

    ModelStore(tmp_path / "data" / "models").add(tiny_bundle, "u", alias="production")
    config = write_station(tmp_path, Path("deadbeef00"))
    result = _cli("run", str(config), cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"{config}:{line}: model.bundle: no model version deadbeef00 in ")

    config = write_station(tmp_path, Path("candidate"))
    result = _cli("config", "validate", str(config), cwd=tmp_path)
    assert result.returncode == 2 and f"{config}:{line}: model.bundle: no version is candidate" in result.stderr


def test_station_yaml_may_name_a_version_by_its_id_and_paths_keep_working(tmp_path, tiny_bundle):
    v = ModelStore(tmp_path / "data" / "models").add(tiny_bundle, "u").version
    for name in (v.id, v.id[:8]):
        config, _ = load_config(write_station(tmp_path, Path(name)))
        assert config.model.bundle == str(v.path)
    config, _ = load_config(write_station(tmp_path, tiny_bundle))  # a path, as before the store
    assert config.model.bundle == str(tiny_bundle)


def test_model_commands_refuse_a_bad_storage_section_and_a_missing_config(tmp_path, tiny_bundle):
    config = write_station(tmp_path, tiny_bundle)
    data = yaml.safe_load(config.read_text())
    data["storage"]["models_max_mb"] = "big"
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    result = _cli("model", "list", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"{config}:{_line(config, 'models_max_mb')}: storage.models_max_mb: ")
    result = _cli("model", "list", "--config", str(tmp_path / "nope.yaml"), cwd=tmp_path)
    assert result.returncode == 2 and result.stderr == f"{tmp_path / 'nope.yaml'}: no such file\n"
    config = write_station(tmp_path, tiny_bundle)
    result = _cli("model", "add", str(tmp_path / "nothing"), "--config", str(config), cwd=tmp_path)
    assert (
        result.returncode == 2
        and result.stderr == f"edge-inspect: error: {tmp_path / 'nothing'}: not a bundle folder\n"
    )


def test_an_automatic_shadow_of_a_version_the_store_does_not_hold_is_refused_naming_the_key(tmp_path, tiny_bundle):
    held = ModelStore(tmp_path / "data" / "models").add(tiny_bundle, "u", alias="production").version.id
    shadow = {"auto": True, "version": "deadbeef00"}
    config = write_station(tmp_path, Path("production"), model={"shadow": shadow})
    result = _cli("config", "validate", str(config), cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == "" and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"{config}:{_line(config, 'version')}: model.shadow.version: no model version "
                                    "deadbeef00 in ")  # fmt: skip
    assert result.stderr.rstrip().endswith("(model.shadow.auto is true)")

    for fine in ({"auto": True, "version": held[:10]}, {"auto": True, "version": "candidate"},  # no candidate yet
                 {"auto": False, "version": "deadbeef00"}):  # fmt: skip
        config = write_station(tmp_path, Path("production"), model={"shadow": fine})
        assert load_config(config)[0].model.shadow.version == fine["version"]

    (tmp_path / "elsewhere").mkdir()
    elsewhere = write_station(tmp_path / "elsewhere", tiny_bundle, model={"shadow": shadow})  # no store to read there
    assert load_config(elsewhere)[0].model.shadow.version == "deadbeef00"


def test_promoting_the_production_again_changes_nothing_and_records_nothing(tmp_path, tiny_bundle):
    config = write_station(tmp_path, Path("production"), storage={"dir": "data"})
    store = ModelStore(tmp_path / "data" / "models")
    a = store.add(tiny_bundle, "u", alias="production").version.id
    before = store.state()
    for args in (["production"], [a[:10]], [a, "--force"]):
        same = _cli("model", "promote", *args, "--user", "carol", "--config", str(config), cwd=tmp_path)
        assert same.returncode == 0 and same.stderr == "", same.stderr
        assert same.stdout == f"version {a} is already production; nothing changed\n"
    assert store.state() == before  # no history entry, the aliases as they were
    b = store.add(other_version(tiny_bundle, tmp_path / "b", "b"), "u", alias="candidate").version.id
    again = _cli("model", "promote", b, "--to", "candidate", "--config", str(config), cwd=tmp_path)
    assert again.stdout == f"version {b} is already candidate; nothing changed\n"
    refused = _cli(
        "model", "promote", "candidate", "--config", str(config), cwd=tmp_path
    )  # a change still needs its gate
    assert refused.returncode == 2 and "has no gate result" in refused.stderr
