"""The appliance as a user installs it: systemd/README.md's steps in a temporary root (all but
systemctl/journalctl), then the installed wheel — without torch — run from outside the checkout:
`edge-inspect demo`, `edge-inspect run` with the HMI, `user hash-password`, `--version`."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from ..support.paths import DEMO_STUDENT, REPO_ROOT
from ..support.stations import free_port

SYSTEM_PREFIXES = ("/opt/", "/etc/", "/usr/local/", "/var/lib/")


def _readme_steps() -> list[str]:
    text = (REPO_ROOT / "systemd" / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    return [line.strip() for line in block.splitlines() if line.strip()]


def _in_root(command: str, root: Path) -> str:
    """The command with `sudo` dropped and absolute system paths moved under ``root``."""
    command = re.sub(r"(^|&& )sudo ", r"\1", command)
    for prefix in SYSTEM_PREFIXES:
        command = re.sub(rf"(?<![\w.]){re.escape(prefix)}", f"{root}{prefix}", command)
    return command


def _checkout_copy(dest: Path) -> Path:
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    for name in files:
        src = REPO_ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    if shutil.which("useradd") is None:
        pytest.skip("useradd is not installed")
    root = tmp_path_factory.mktemp("root")
    for folder in ("opt", "usr/local/bin", "usr/local/share", "var/lib", "etc/systemd/system"):  # as on any system
        (root / folder).mkdir(parents=True)
    for name in ("passwd", "group", "shadow", "gshadow"):  # useradd --prefix edits copies of these
        if Path("/etc", name).is_file():
            shutil.copy(Path("/etc", name), root / "etc" / name)
    checkout = _checkout_copy(tmp_path_factory.mktemp("checkout"))
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if ".venv" not in p)
    ran = []
    for step in _readme_steps():
        if re.match(r"(sudo )?(systemctl|journalctl)\b", step):
            continue  # needs a running systemd; the unit file is checked by test_daemon.py
        command = _in_root(step, root)
        stdin = None
        if " user hash-password" in command:  # typed at the prompt
            stdin = "a long passphrase\n"
            command = command.split("#")[0] + f"> {root}/hash.txt"
        if command.startswith("sudoedit "):  # the integrator's edit: a password and a camera this machine has
            path = Path(command.split()[1])
            text = path.read_text().replace(
                "REPLACE with the output of: edge-inspect user hash-password", (root / "hash.txt").read_text().strip()
            )
            text = re.sub(r"(?m)^camera:\n(  .*\n)+", "camera:\n  source: synthetic\n", text)
            path.write_text(text)
            ran.append(step)
            continue
        group = re.search(r"-g edge-inspect\b", command)
        if group:  # the group lives in the temporary root's /etc/group, not this machine's
            gid = next(
                line.split(":")[2]
                for line in (root / "etc" / "group").read_text().splitlines()
                if line.startswith("edge-inspect:")
            )
            command = command.replace("-g edge-inspect", f"-g {gid}")
        if command.startswith("useradd "):
            command = command.replace("useradd ", f"useradd --prefix {root} ", 1)
            command = command.replace(f"--home-dir {root}/", "--home-dir /")  # a path inside the prefix
        result = subprocess.run(command, shell=True, cwd=checkout, env=env, capture_output=True, text=True, input=stdin)
        assert result.returncode == 0, f"systemd/README.md step failed: {step}\n{result.stdout}\n{result.stderr}"
        ran.append(step)
    unit = (REPO_ROOT / "systemd" / "edge-inspect.service").read_text()
    for doc in re.search(r"^Documentation=(.*)$", unit, re.M).group(1).split():
        assert (root / doc.removeprefix("file:///")).is_file(), f"Documentation= names a missing file: {doc}"
    assert "edge-inspect:" in (root / "etc" / "passwd").read_text()
    venv = root / "opt" / "edge-inspect" / "venv"
    return {
        "root": root,
        "venv": venv,
        "exe": root / "usr" / "local" / "bin" / "edge-inspect",
        "env": env,
        "steps": ran,
    }


def test_readme_steps_install_a_torch_free_appliance(installed):
    assert len(installed["steps"]) >= 8
    python = installed["venv"] / "bin" / "python"
    probe = subprocess.run(
        [
            str(python),
            "-c",
            "import importlib.util as u; import edge_inspect, edge_inspect.web.app;"
            "print(u.find_spec('torch') is None, u.find_spec('transformers') is None)",
        ],
        capture_output=True,
        text=True,
    )
    assert probe.stdout.split() == ["True", "True"], probe.stdout + probe.stderr
    version = subprocess.run([str(installed["exe"]), "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and re.fullmatch(r"edge-inspect \d+\.\d+\.\d+\S*\n", version.stdout), version


def test_installed_demo_runs_from_another_folder(installed, tmp_path):
    result = subprocess.run(
        [
            str(installed["exe"]),
            "demo",
            "--duration",
            "15",
            "--workdir",
            "work",
            "--port",
            str(free_port()),
            "--web-port",
            "0",
        ],
        cwd=tmp_path,
        env=installed["env"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    verdicts = re.findall(r"^#\d+\s+P\d+\s+(PASS|FAIL|ERROR)", result.stdout, re.M)
    assert "PASS" in verdicts and "FAIL" in verdicts, result.stdout
    assert (tmp_path / "work" / "inspections.db").is_file()


def test_installed_run_serves_the_hmi_and_hashes_passwords(installed, tmp_path):
    hashed = subprocess.run(
        [str(installed["exe"]), "user", "hash-password"],
        input="correct horse\n",
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert hashed.returncode == 0 and hashed.stdout.startswith("scrypt$"), hashed.stderr
    config = yaml.safe_load((REPO_ROOT / "edge_inspect" / "demo_station.yaml").read_text())
    web_port = free_port()
    config["plc"]["port"] = free_port()
    config["web"].update(
        port=web_port, users=[{"name": "op", "role": "operator", "password_hash": hashed.stdout.strip()}]
    )
    config["storage"]["dir"] = str(tmp_path / "data")
    (tmp_path / "station.yaml").write_text(yaml.safe_dump(config))
    proc = subprocess.Popen(
        [str(installed["exe"]), "run", "station.yaml"],
        cwd=tmp_path,
        env=installed["env"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        status, deadline = None, time.monotonic() + 120
        while status != 200 and time.monotonic() < deadline and proc.poll() is None:
            try:
                status = urllib.request.urlopen(f"http://127.0.0.1:{web_port}/", timeout=5).status
            except OSError:
                time.sleep(0.5)
        assert status == 200, "the HMI did not answer"
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, out
    assert "Traceback" not in out, out


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))


def test_the_wheel_carries_every_file_of_the_demo_bundle():
    """setup.cfg's data_files list the demo bundle file by file: one the manifest names but the list
    misses would leave the installed bundle unloadable."""
    import configparser
    import json

    cfg = configparser.ConfigParser()
    cfg.read(REPO_ROOT / "setup.cfg")
    listed = {Path(line).name for line in cfg["options.data_files"]["share/edge-inspect/models/demo-student"].split()}
    manifest = json.loads((DEMO_STUDENT / "manifest.json").read_text())
    assert {"manifest.json", *manifest["files"]} <= listed
