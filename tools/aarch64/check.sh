#!/usr/bin/env bash
# The appliance on aarch64 (the Jetson's CPU architecture), under emulation on an x86 machine:
# builds a Debian bookworm arm64 root with debootstrap, installs the appliance's wheel into a venv
# there from PyPI, and runs `edge-inspect demo --duration 20`, `edge-inspect config validate` and a
# Modbus handshake driven by mbpoll, all inside the arm64 root (qemu-user through binfmt_misc).
#
#   sudo tools/aarch64/check.sh [WORKDIR]        (default work/aarch64; needs root for the chroot)
#
# Needs Debian's qemu-user-static, binfmt-support and debootstrap, and network access to Debian's
# mirror and PyPI. The root is kept in WORKDIR/root and reused by the next run (delete it to start
# over). Report: WORKDIR/report.md and WORKDIR/report.json — every dependency with the file pip
# installed (an aarch64 wheel, a pure-Python wheel, or a source archive built there), the demo's
# output and the time each step took. It is not part of the test suite: a run takes 15-40 minutes.
set -euo pipefail
[[ $(id -u) -eq 0 ]] || { echo "run as root (debootstrap and chroot need it)" >&2; exit 2; }
# The root's /proc, /sys and /dev are bind mounts: in a mount namespace of this script's own they
# vanish with it, and nothing outside (an `rm -r` of the work folder included) can reach through
# them into this machine's /dev.
if [[ -z ${AARCH64_CHECK_NS:-} ]]; then
    AARCH64_CHECK_NS=1 exec unshare --mount --propagation private "$(realpath "$0")" "$@"
fi
cd "$(dirname "$0")/../.."
repo=$PWD
work=$(realpath -m "${1:-work/aarch64}")
root=$work/root
mirror=${MIRROR:-http://deb.debian.org/debian}
python=${PYTHON:-python3}
mkdir -p "$work"
exec > >(tee "$work/run.log") 2>&1

for tool in debootstrap qemu-aarch64-static; do
    command -v "$tool" >/dev/null || { echo "$tool is missing: apt-get install qemu-user-static binfmt-support debootstrap" >&2; exit 2; }
done
if [[ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]]; then
    mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    update-binfmts --enable qemu-aarch64
fi

declare -A took
step() {  # step NAME COMMAND...: run it and remember how long it took
    local name=$1; shift
    local start=$SECONDS
    echo "== $name"
    "$@"
    took[$name]=$((SECONDS - start))
    echo "== $name: ${took[$name]} s"
}

bootstrap() {
    if [[ -x $root/usr/bin/python3 && -x $root/usr/bin/mbpoll ]]; then echo "reusing $root"; return; fi
    rm -rf --one-file-system "$root"
    debootstrap --arch=arm64 --variant=minbase \
        --include=python3,python3-venv,python3-pip,mbpoll,ca-certificates,procps \
        bookworm "$root" "$mirror"
}

wheel() {
    rm -rf "$work/dist"
    "$python" -m pip wheel --no-deps --no-build-isolation -q -w "$work/dist" "$repo"
    rm -rf "$root/opt/wheel" && mkdir -p "$root/opt/wheel" && cp "$work/dist"/*.whl "$root/opt/wheel/"
}

mounts() {
    for fs in proc sys dev; do mountpoint -q "$root/$fs" || mount --bind "/$fs" "$root/$fs"; done
    # qemu-user (7.2, Debian bookworm) shows the guest this machine's x86 /proc/cpuinfo, and
    # onnxruntime's CPU detection crashes on it (SIGSEGV at import): give it an aarch64 one.
    mountpoint -q "$root/proc/cpuinfo" || mount --bind "$repo/tools/aarch64/cpuinfo" "$root/proc/cpuinfo"
    cp /etc/resolv.conf "$root/etc/resolv.conf"
    # This machine's trust store (a network proxy's CA included), for pip inside the root.
    cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
}
unmount() { for fs in proc/cpuinfo dev sys proc; do umount "$root/$fs" 2>/dev/null || true; done; }
trap unmount EXIT

clean_env=(/usr/bin/env -i HOME=/root PATH=/opt/ei/bin:/usr/bin:/bin LANG=C.UTF-8
           PIP_CERT=/etc/ssl/certs/ca-certificates.crt PIP_DISABLE_PIP_VERSION_CHECK=1)
inside() { chroot "$root" "${clean_env[@]}" "$@"; }

install() {
    inside uname -m
    inside /bin/sh -c 'rm -rf /opt/ei && python3 -m venv /opt/ei && /opt/ei/bin/pip install -q --upgrade pip'
    inside /bin/sh -c '/opt/ei/bin/pip install --report /opt/pip-report.json /opt/wheel/*.whl'
    cp "$root/opt/pip-report.json" "$work/pip-report.json"
}

demo() { inside /bin/sh -c 'mkdir -p /opt/run && cd /opt/run && edge-inspect demo --duration 20 --workdir /opt/run/demo' | tee "$work/demo.txt"; }

validate() {
    # The demo station with ports of its own, so that nothing on the host machine is in the way.
    inside /opt/ei/bin/python - <<'EOF'
import pathlib, yaml, edge_inspect
config = yaml.safe_load((pathlib.Path(edge_inspect.__file__).parent / "demo_station.yaml").read_text())
config["plc"]["port"] = 15020
config["web"]["port"] = 18080
config["storage"]["dir"] = "/opt/run/station-data"
pathlib.Path("/opt/run/station.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
EOF
    inside edge-inspect config validate /opt/run/station.yaml | tee "$work/validate.txt"
}

handshake() {
    # exec all the way down (subshell, chroot, env, sh): $station is the station's own process.
    (exec chroot "$root" "${clean_env[@]}" /bin/sh -c 'cd /opt/run && exec edge-inspect run /opt/run/station.yaml') \
        > "$work/station.txt" 2>&1 &
    local station=$!
    read_regs() { inside mbpoll -0 -1 -q -p 15020 -t "$1" -r "$2" -c "${3:-1}" 127.0.0.1; }  # table address [count]
    write_regs() { local table=$1 address=$2; shift 2; inside mbpoll -0 -1 -q -p 15020 -t "$table" -r "$address" 127.0.0.1 "$@" >/dev/null; }
    wait_for() {  # discrete input $1 becomes $2 (two minutes at most: the model loads slowly under emulation)
        for _ in $(seq 1200); do
            read_regs 1 "$1" 2>/dev/null | grep -q "^\[$1\]:[[:space:]]*$2\b" && return 0
            sleep 0.1
        done
        echo "discrete input $1 never became $2" >&2; return 1
    }
    local ok=0
    {
        wait_for 1 1 &&                               # ready
        write_regs 4 0 701 1 &&                       # trigger_id 701, recipe 1
        write_regs 0 0 1 &&                           # trigger
        wait_for 3 1 &&                               # results_valid
        read_regs 3 0 5 | tee "$work/handshake.txt" &&  # result_id, verdict, defects, failed checks, error
        write_regs 0 0 0 && write_regs 0 1 1 &&       # trigger low, results_ack
        wait_for 3 0 && write_regs 0 1 0 &&
        ok=1
    } || true
    kill "$station"  # SIGTERM: a clean stop 2>/dev/null || true
    for _ in $(seq 300); do kill -0 "$station" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$station" 2>/dev/null || true
    wait "$station" 2>/dev/null || true
    [[ $ok -eq 1 ]] && grep -q "^\[0\]:.*701" "$work/handshake.txt"
}

step bootstrap bootstrap
step wheel wheel
mounts
step install install
step demo demo
step validate validate
step handshake handshake

"$python" "$repo/tools/aarch64/report.py" "$work" \
    --took "$(for k in "${!took[@]}"; do printf '%s=%s,' "$k" "${took[$k]}"; done)" \
    --machine "$(inside uname -m)" --python "$(inside python3 --version)"
