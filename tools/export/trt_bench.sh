#!/usr/bin/env bash
# Build TensorRT engines for a bundle and bench them against ONNX Runtime, on a CUDA machine
# (x86 + GPU with the 'trt' extra, or a Jetson with JetPack's TensorRT bindings). About 5 minutes
# for the demo student; every step has a time limit so the whole run stays under 10 minutes.
#
#   tools/export/trt_bench.sh [--check-only] [BUNDLE] [PRECISION]
#
# BUNDLE defaults to models/demo-student; PRECISION to fp16 (int8 needs a QDQ bundle from
# `quantize --vision int8`). The bundle is copied to work/trt-bench/ first: engines are device
# artifacts and the repository's bundle stays as it is. --check-only runs the graph checks, prints
# the trtexec lines and every command it would run, and needs no GPU. Either way it first lists what
# it needs (Python, GPU, TensorRT bindings, cuda-python, onnx, onnxruntime-gpu, trtexec), each found
# or missing with how to get it on a Jetson, and stops (exit 2) when something needed is missing.
# Output: work/trt-bench/{ort,trt}.json (edge-inspect bench rows) and the tables on stdout.
set -euo pipefail

check_only=0
if [[ "${1:-}" == "--check-only" ]]; then check_only=1; shift; fi
bundle=${1:-models/demo-student}
precision=${2:-fp16}
python=${PYTHON:-python}
work=work/trt-bench
copy="$work/$(basename "$bundle")"

run() {  # run with a time limit, or only print it with --check-only
    local limit=$1; shift
    echo "+ $*"
    if (( ! check_only )); then timeout "$limit" "$@"; fi
}

# Everything this needs, each found or missing with how to get it (tools/export/prereqs.py).
if ! "$python" -m tools.export.prereqs; then
    (( check_only )) || exit 2
    echo "(check only: printing the commands anyway)"
fi
if "$python" -c "import onnx" 2>/dev/null; then
    "$python" -m tools.export trt --bundle "$bundle" --precision "$precision" --check-only
fi
if (( ! check_only )); then
    mkdir -p "$work"
    rm -rf "$copy"
    cp -r "$bundle" "$copy"
else
    echo "(check only: nothing is built or timed)"
fi
run 300 "$python" -m tools.export trt --bundle "$copy" --precision "$precision"
run 120 "$python" -m edge_inspect.cli bench "$copy" --provider auto --runs 20 --json "$work/ort.json"
run 120 "$python" -m edge_inspect.cli bench "$copy" --backend tensorrt --runs 20 --json "$work/trt.json"
uptime
