#!/usr/bin/env bash
# Build llama.cpp's tools (llama-server, llama-quantize, llama-imatrix, llama-perplexity, shared libs)
# from the source vendored in llama-cpp-python's pinned sdist (PyPI), plus the Python binding without
# its own C++ build (it loads our libllama through LLAMA_CPP_LIB_PATH). Cached outside the clone,
# keyed by the pin, the flags, the compiler and the CPU (GGML_NATIVE tunes for this CPU); marked
# complete last. ~9 min on 2 cores, once. Prints the tool folder. PYTHON only fetches the sdist and installs
# the binding into the tool folder (--target): any Python 3.11 does, so the set-up runs this beside its pip
# installs. BUILD_LOG (optional) takes the compiler's and pip's output, which would otherwise interleave.
#   usage: build_llamacpp.sh HOME PYTHON [BUILD_LOG]
set -euo pipefail
home="$1"; py="$2"; out="${3:-/dev/stderr}"
LLAMA_CPP_PYTHON=0.3.36
DISKCACHE=5.6.3
FLAGS="-DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON -DGGML_NATIVE=ON"
TARGETS="llama-server llama-quantize llama-imatrix llama-perplexity mtmd"
log() { echo "[setup] $*" >&2; }

cpu="$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | sha256sum | cut -c1-8)"
key="$(echo "$LLAMA_CPP_PYTHON $DISKCACHE $FLAGS $TARGETS $(c++ -dumpfullversion 2>/dev/null) $(uname -m) $cpu" \
       | sha256sum | cut -c1-12)"
dir="$home/tools/llamacpp-$key"
if [[ ! -f "$dir/.complete" ]]; then
  command -v cmake >/dev/null && command -v c++ >/dev/null \
    || { log "building llama.cpp needs cmake and a C++ compiler (apt install cmake g++)"; exit 1; }
  log "building llama.cpp (llama-cpp-python $LLAMA_CPP_PYTHON's vendored source) into $dir -- ~9 min, once"
  rm -rf "$dir"; mkdir -p "$dir"
  if [[ "$out" != /dev/stderr ]]; then : > "$out"; fi  # this build's output only
  tmp="$(mktemp -d)"
  "$py" -m pip download --disable-pip-version-check -q --no-deps --no-binary :all: \
    "llama-cpp-python==$LLAMA_CPP_PYTHON" -d "$tmp" >>"$out" 2>&1
  tar xzf "$tmp"/llama_cpp_python-*.tar.gz -C "$tmp"
  mv "$tmp/llama_cpp_python-$LLAMA_CPP_PYTHON/vendor/llama.cpp" "$dir/src"
  gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
  # shellcheck disable=SC2086
  cmake -S "$dir/src" -B "$dir/build" "${gen[@]}" $FLAGS >>"$out" 2>&1
  # shellcheck disable=SC2086
  cmake --build "$dir/build" -j"$(nproc)" --target $TARGETS >>"$out" 2>&1
  # the binding without its C++ (it would compile llama.cpp a second time)
  CMAKE_ARGS="-DLLAMA_BUILD=OFF -DLLAVA_BUILD=OFF" "$py" -m pip install --disable-pip-version-check -q \
    --no-deps --no-cache-dir --target "$dir/py" "$tmp"/llama_cpp_python-*.tar.gz "diskcache==$DISKCACHE" >>"$out" 2>&1
  echo "llama-cpp-python $LLAMA_CPP_PYTHON (vendored llama.cpp); $FLAGS" > "$dir/VERSION"
  rm -rf "$tmp"
  touch "$dir/.complete"
fi
echo "$dir"
