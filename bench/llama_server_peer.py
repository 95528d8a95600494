"""Builds upstream llama.cpp's `llama-server` and `llama-batched-bench` as a benchmark peer, on demand.

The peer comes from the very llama.cpp the pinned llama-cpp-python vendors (its sdist's
vendor/llama.cpp), so a comparison measures serving, not two different kernels. It is never a
runtime dependency and nothing of it is committed: everything lives in ~/.cache/news-enhancer/peer/.

    .venv/bin/python bench/llama_server_peer.py            # build (skipped when the binaries exist)
    .venv/bin/python bench/llama_server_peer.py --print    # print the binaries' paths, build nothing
    .venv/bin/python bench/llama_server_peer.py --background   # build under nohup, log to build.log

The sdist comes from pip's cache or PyPI (`pip download --no-binary :all:`). The build is offline
(no curl, no OpenSSL, no web UI download from Hugging Face, no tests or examples) and takes
10-15 minutes on 2 cores. On a CPU that advertises AMX it uses scripts/setup.sh's flags (AVX-512
without AMX), since -march=native crashes where AMX faults; CMAKE_ARGS in the environment adds to
or overrides the options.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

LLAMA_CPP_PYTHON = "0.3.36"  # pinned in pyproject.toml; the peer must be built from the same llama.cpp
PEER_DIR = Path(os.environ.get("NEWS_ENHANCER_PEER_DIR", Path.home() / ".cache/news-enhancer/peer"))
TARGETS = ("llama-server", "llama-batched-bench")

# Offline: LLAMA_CURL is deprecated and ignored in this llama.cpp (kept for older ones); HTTPS
# would need OpenSSL (or fetch BoringSSL/LibreSSL); the server's web UI is otherwise downloaded from
# a Hugging Face bucket at build time (without it the server embeds no UI, which a benchmark does not
# need); tests and examples are not needed.
OFFLINE_OPTIONS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_BUILD_SERVER=ON",
    "-DLLAMA_BUILD_TOOLS=ON",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_APP=OFF",
)
# The same flags as scripts/setup.sh uses for the runtime library on a CPU that advertises AMX.
AMX_OPTIONS = (
    "-DGGML_NATIVE=OFF",
    "-DGGML_AVX512=ON",
    "-DGGML_AVX512_VBMI=ON",
    "-DGGML_AVX512_VNNI=ON",
    "-DGGML_AVX512_BF16=ON",
    "-DGGML_AVX_VNNI=ON",
)


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cmake_options() -> list[str]:
    options = list(OFFLINE_OPTIONS)
    options += AMX_OPTIONS if "amx_tile" in cpu_flags() else ["-DGGML_NATIVE=ON"]
    options += shlex.split(os.environ.get("CMAKE_ARGS", ""))  # last wins in cmake
    return options


def source_dir(peer: Path = PEER_DIR) -> Path:
    return peer / f"llama_cpp_python-{LLAMA_CPP_PYTHON}" / "vendor" / "llama.cpp"


def build_dir(peer: Path = PEER_DIR) -> Path:
    return peer / "build"


def binary(name: str, peer: Path = PEER_DIR) -> Path:
    return build_dir(peer) / "bin" / name


def binaries(peer: Path = PEER_DIR) -> dict[str, Path] | None:
    """The built binaries, or None when any is missing."""
    found = {name: binary(name, peer) for name in TARGETS}
    return found if all(os.access(path, os.X_OK) for path in found.values()) else None


def fetch_sdist(peer: Path = PEER_DIR) -> Path:
    sdist = peer / f"llama_cpp_python-{LLAMA_CPP_PYTHON}.tar.gz"
    if not sdist.exists():
        peer.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--no-deps"]
        command += ["--no-binary", ":all:", f"llama-cpp-python=={LLAMA_CPP_PYTHON}", "-d", str(peer)]
        print("peer:", shlex.join(command), flush=True)
        subprocess.run(command, check=True)
    return sdist


def unpack(sdist: Path, peer: Path = PEER_DIR) -> Path:
    src = source_dir(peer)
    if not (src / "CMakeLists.txt").exists():
        print(f"peer: unpacking {sdist.name}", flush=True)
        with tarfile.open(sdist) as archive:
            archive.extractall(peer, filter="data")
    return src


def build(peer: Path = PEER_DIR, jobs: int = 2) -> dict[str, Path]:
    """Builds the peer binaries unless they exist; returns their paths."""
    found = binaries(peer)
    if found:
        return found
    for tool in ("cmake", "c++"):
        if not shutil.which(tool):
            raise SystemExit(f"peer: {tool} not found; install cmake and a C++ compiler to build llama-server")
    src = unpack(fetch_sdist(peer), peer)
    configure = ["cmake", "-S", str(src), "-B", str(build_dir(peer)), *cmake_options()]
    if shutil.which("ninja") and not (build_dir(peer) / "CMakeCache.txt").exists():
        configure += ["-G", "Ninja"]
    compile_ = ["cmake", "--build", str(build_dir(peer)), "--target", *TARGETS, "-j", str(jobs)]
    for command in (configure, compile_):
        print("peer:", shlex.join(command), flush=True)
        subprocess.run(command, check=True)
    found = binaries(peer)
    if not found:
        raise SystemExit(f"peer: the build finished but {', '.join(TARGETS)} are not all in {build_dir(peer) / 'bin'}")
    return found


def build_in_background(peer: Path = PEER_DIR, jobs: int = 2) -> Path:
    """Starts `build` under nohup with its output in peer/build.log; returns the log's path."""
    peer.mkdir(parents=True, exist_ok=True)
    log = peer / "build.log"
    command = ["nohup", sys.executable, str(Path(__file__).resolve()), "--jobs", str(jobs)]
    with log.open("ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    (peer / "build.pid").write_text(f"{process.pid}\n")
    return log


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2, help="parallel compile jobs")
    parser.add_argument("--print", action="store_true", help="print the binaries' paths (or nothing) and exit")
    parser.add_argument("--background", action="store_true", help="build under nohup, logging to build.log")
    args = parser.parse_args()
    if args.print:
        for name, path in (binaries() or {}).items():
            print(f"{name}\t{path}")
        return 0 if binaries() else 1
    if args.background:
        if binaries():
            print("peer: already built")
            return 0
        print(f"peer: building in the background; log: {build_in_background(jobs=args.jobs)}")
        return 0
    for name, path in build(jobs=args.jobs).items():
        print(f"{name}\t{path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
