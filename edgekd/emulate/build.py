"""Build TFLM from a real source tree, and link generated firmware against it.

A TFLM distribution (Chirale_TensorFLowLite, esp-tflite-micro) is compiled
into a static library once per (tree, toolchain, flags) and cached; every
object is rebuilt only when its source is newer, so a second model costs only
the project's own files. The project — the generated sketch / ESP-IDF app /
PlatformIO main, unchanged — is then linked with that library and with the
board-SDK stand-ins of ``sdk/`` (serial to stdout or semihosting, a clock, no-op
delays) and a ``main`` that calls ``setup()`` and ``loop()``.

Kernels: Chirale's tree builds with its CMSIS-NN kernels (their portable C
paths on the host, the DSP paths on a Cortex-M4); esp-tflite-micro's ESP-NN
kernels need Espressif's ESP-NN sources, which the component does not carry, so
its tree builds with TFLM's reference kernels — unless an ESP-NN source tree is
given (:class:`EspNn`): then, as esp-tflite-micro's CMakeLists does, its
``kernels/esp_nn/*.cc`` replace TFLM's add, conv, depthwise_conv,
fully_connected, mul, pooling and softmax kernels, with ``-DESP_NN`` and
ESP-NN's portable C sources (ANSI C, or its generic optimisations), in a
library cached apart.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import fcntl
import hashlib
import os
import shutil
import subprocess
from pathlib import Path
import re
from typing import Iterable, Optional, Sequence

from edgekd.boards.runtime import TreeFacts
from edgekd.errors import EdgeKDError, ToolNotFoundError

SDK = Path(__file__).resolve().parent / "sdk"
# Folders and files of a TFLM tree that are not the library (tests, tools, ports for other
# platforms, ESP-NN glue that needs Espressif's ESP-NN sources).
_EXCLUDE = ("/kernels/esp_nn/", "/micro/esp/", "/python/", "/tools/", "/examples/", "/experimental/",
            "/benchmarks/", "/testing/", "/kissfft/", "/signal/", "/peripherals/")
_EXCLUDE_SUFFIX = ("_test.cc", "_test.cpp", "_test.c")
_THIRD_PARTY_INCLUDES = ("flatbuffers/include", "gemmlowp", "ruy", "kissfft")
# esp-tflite-micro's CMakeLists: "remove sources which will be provided by esp_nn".
_ESP_NN_REPLACED = tuple(f"/micro/kernels/{k}.cc"
                         for k in ("add", "conv", "depthwise_conv", "fully_connected", "mul", "pooling", "softmax"))


@dataclasses.dataclass(frozen=True)
class EspNn:
    """Espressif's ESP-NN source tree (``include/``, ``src/``), for a host build of esp-tflite-micro's ESP-NN kernels.

    Attributes:
        root: The tree.
        optimized: ``CONFIG_NN_OPTIMIZED``: ESP-NN's generic optimisations (what chips without assembly kernels,
            e.g. the ESP32, run); False: its ANSI C functions (``CONFIG_NN_ANSI_C``).
    """

    root: Path
    optimized: bool = False

    def sources(self) -> list[Path]:
        """ESP-NN's portable C files: the ``*_ansi.c`` and ``*_opt.c`` its CMakeLists builds on every chip."""
        return sorted(p for p in (self.root / "src").rglob("*.c") if p.stem.endswith(("_ansi", "_opt")))

    def flags(self) -> list[str]:
        """The defines and include folders of the kernels (and of an engine calling ESP-NN)."""
        defines = ["-DESP_NN=1", *(["-DCONFIG_NN_OPTIMIZED=1"] if self.optimized else [])]
        return defines + ["-isystem", str(self.root / "include"), "-isystem", str(self.root / "src" / "common")]


class BuildError(EdgeKDError):
    """Compiling or linking the firmware failed (the message carries the compiler's first error)."""

    exit_code = 1


@dataclasses.dataclass(frozen=True)
class Toolchain:
    """A compiler set and the flags of one machine.

    Attributes:
        name: ``"host"`` or ``"cortex-m4f"``.
        cc: C compiler.
        cxx: C++ compiler.
        ar: Archiver.
        flags: Flags for C and C++ (CPU, optimisation, defines).
        cxx_flags: C++-only flags.
        link_flags: Flags for the final link.
        install: How to install the compilers when missing.
    """

    name: str
    cc: str
    cxx: str
    ar: str
    flags: tuple[str, ...]
    cxx_flags: tuple[str, ...]
    link_flags: tuple[str, ...] = ()
    install: str = "apt-get install g++"

    def require(self) -> None:
        """Raise :class:`ToolNotFoundError` when a compiler is missing."""
        for tool in (self.cc, self.cxx, self.ar):
            if shutil.which(tool) is None:
                raise ToolNotFoundError(f"{tool} is not installed; install it with `{self.install}` "
                                        "(or `make sysdeps` in an edgekd checkout).")


_COMMON = ("-DTF_LITE_STATIC_MEMORY", "-DTF_LITE_DISABLE_X86_NEON", "-ffunction-sections", "-fdata-sections")
HOST = Toolchain(
    name="host", cc="gcc", cxx="g++", ar="ar",
    flags=("-O1", *_COMMON),
    cxx_flags=("-std=gnu++17", "-fno-rtti", "-fno-exceptions", "-fno-threadsafe-statics"),
    link_flags=("-Wl,--gc-sections",),
)


# Cortex-M4F with its FPU, as on the NUCLEO-L4R5ZI and the Nano 33 BLE, for QEMU's mps2-an386 with
# newlib and semihosting. -Os as the Arduino mbed core and Mbed OS's release profile build.
CORTEX_M4F = Toolchain(
    name="cortex-m4f", cc="arm-none-eabi-gcc", cxx="arm-none-eabi-g++", ar="arm-none-eabi-ar",
    flags=("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16", "-Os", *_COMMON),
    cxx_flags=HOST.cxx_flags,
    link_flags=("--specs=rdimon.specs", "-Wl,--gc-sections", "-T", str(SDK / "mps2" / "mps2-an386.ld")),
    install="apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib",
)


def cache_root() -> Path:
    """Where built libraries go: ``$EDGEKD_BUILD_DIR``, else ``~/.cache/edgekd/build``."""
    env = os.environ.get("EDGEKD_BUILD_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "edgekd" / "build"


def include_dirs(facts: TreeFacts) -> list[Path]:
    """The include path a TFLM tree's own sources expect."""
    root = facts.source_root
    dirs = [root]
    for rel in _THIRD_PARTY_INCLUDES:
        if (root / "third_party" / rel).is_dir():
            dirs.append(root / "third_party" / rel)
    return dirs


_REGISTRATION = re.compile(
    r"^(?:TFLMRegistration|TfLiteRegistration)\s*\*?\s*Register_(\w+)\(\)\s*\{", re.MULTILINE)
# Custom ops: custom code -> the registration's name.
_CUSTOM_REGISTRATIONS = {"TFLite_Detection_PostProcess": "DETECTION_POSTPROCESS", "CIRCULAR_BUFFER": "CIRCULAR_BUFFER"}


def _registrations(src: Path) -> set[str]:
    if "/kernels/" not in src.as_posix():
        return set()
    return set(_REGISTRATION.findall(src.read_text(errors="replace")))


def library_sources(facts: TreeFacts, ops: Optional[Iterable[str]] = None, esp_nn: Optional[EspNn] = None
                    ) -> list[Path]:
    """The C and C++ files of the TFLM library in ``facts``' tree (see the module docstring).

    Args:
        facts: The tree.
        ops: Only the kernels of these ops (TFLite builtin names such as
            ``"CONV_2D"``, custom ops as ``"CUSTOM:<code>"``); every kernel when ``None``.
            Kernel files that define no registration (shared helpers) are always included.
        esp_nn: ESP-NN's sources: esp-tflite-micro's ``kernels/esp_nn/*.cc`` replace the kernels they
            replace in its CMakeLists, and ESP-NN's portable C files are added.
    """
    exclude = _EXCLUDE if esp_nn is None else tuple(x for x in _EXCLUDE if x != "/kernels/esp_nn/") + _ESP_NN_REPLACED
    needed = None
    if ops is not None:
        needed = {_CUSTOM_REGISTRATIONS.get(o.split(":", 1)[1], o.split(":", 1)[1]) if o.startswith("CUSTOM:")
                  else o for o in ops}
    root = facts.source_root
    found = []
    for top in ("tensorflow", "third_party/cmsis_nn/Source"):
        base = root / top
        if not base.is_dir():
            continue
        for p in sorted(base.rglob("*")):
            if p.suffix not in (".c", ".cc", ".cpp") or not p.is_file():
                continue
            rel = "/" + p.relative_to(root).as_posix()
            if any(x in rel for x in exclude) or rel.endswith(_EXCLUDE_SUFFIX):
                continue
            if needed is not None:
                defined = _registrations(p)
                if defined and not defined & needed:
                    continue
            found.append(p)
    return found + (esp_nn.sources() if esp_nn is not None else [])


def _defines(facts: TreeFacts) -> list[str]:
    # Chirale's system_setup.cpp is Arduino code (Serial through the SDK stand-in).
    return ["-DARDUINO=10819"] if facts.distribution.lower().startswith("chirale") else []


def _run(cmd: Sequence[str], what: str, timeout: float) -> None:
    try:
        proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BuildError(f"Compiling {what} took over {timeout:.0f} s and was stopped.") from None
    if proc.returncode != 0:
        first = next((ln for ln in proc.stderr.splitlines() if "error" in ln), proc.stderr.strip()[:300])
        raise BuildError(f"Compiling {what} failed: {first.strip()}\n{proc.stderr[-4000:]}")


def _compile_cmd(tc: Toolchain, src: Path, obj: Path, includes: Sequence[Path], extra: Sequence[str]) -> list[str]:
    cpp = src.suffix != ".c"
    cmd = [tc.cxx if cpp else tc.cc, *tc.flags, *(tc.cxx_flags if cpp else ("-std=gnu11",)), *extra]
    for d in includes:
        cmd += ["-I", str(d)]
    return cmd + ["-c", str(src), "-o", str(obj)]


@dataclasses.dataclass(frozen=True)
class Library:
    """A built TFLM static library.

    Attributes:
        path: The ``.a`` file.
        facts: The tree it was built from.
        toolchain: The toolchain and flags.
        objects_built: Objects compiled by this call (0 when all were cached).
        objects: Objects in the library.
    """

    path: Path
    facts: TreeFacts
    toolchain: Toolchain
    objects_built: int
    objects: int


def build_library(facts: TreeFacts, toolchain: Toolchain = HOST, *, ops: Optional[Iterable[str]] = None,
                  jobs: Optional[int] = None, timeout: float = 1800.0, esp_nn: Optional[EspNn] = None) -> Library:
    """Compile the TFLM library of a tree (cached per tree, toolchain and flags; incremental).

    The library holds every object compiled so far for the tree: with ``ops``,
    only the kernels of those ops that are not yet built are compiled.

    Args:
        facts: The tree (:func:`edgekd.boards.runtime.tree_facts`).
        toolchain: Compilers and flags.
        ops: The ops the model uses (see :func:`library_sources`); ``None`` builds every kernel.
        jobs: Parallel compiles (default: the CPU count).
        timeout: Seconds one compile may take.
        esp_nn: ESP-NN's sources: build esp-tflite-micro's ESP-NN kernels with them (a separate cache).

    Returns:
        The :class:`Library`.

    Raises:
        ToolNotFoundError: A compiler is missing.
        BuildError: A source file does not compile.
    """
    toolchain.require()
    sources = library_sources(facts, ops, esp_nn)
    includes = [*include_dirs(facts), SDK / "include"]
    extra = _defines(facts) + ["-w"] + (esp_nn.flags() if esp_nn is not None else [])  # TFLM's warnings are not ours
    key = hashlib.sha256("\n".join([str(facts.source_root), toolchain.cc, toolchain.cxx, *toolchain.flags,
                                    *toolchain.cxx_flags, *extra]).encode()).hexdigest()[:16]
    variant = "" if esp_nn is None else "-esp-nn"
    out = cache_root() / f"tflm-{facts.distribution}-{facts.version or 'tree'}-{toolchain.name}{variant}-{key}"
    out.mkdir(parents=True, exist_ok=True)
    # One build of a cache folder at a time (parallel test workers, two edgekd runs): the second waits
    # for the first and then finds its objects built.
    with open(out / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _build_locked(facts, toolchain, sources, includes, extra, out, jobs, timeout)


def _build_locked(facts: TreeFacts, toolchain: Toolchain, sources: list[Path], includes: list[Path],
                  extra: list[str], out: Path, jobs: Optional[int], timeout: float) -> Library:
    jobs_todo = []
    for src in sources:
        inside = src.is_relative_to(facts.source_root)
        rel = src.relative_to(facts.source_root).as_posix() if inside else f"external/{src.parent.name}/{src.name}"
        obj = out / "obj" / (rel.replace("/", "__") + ".o")
        if not obj.is_file() or obj.stat().st_mtime < src.stat().st_mtime:
            jobs_todo.append((src, obj))
    (out / "obj").mkdir(exist_ok=True)
    pch = None
    if sum(src.suffix != ".c" for src, _ in jobs_todo) >= _PCH_MIN_FILES:
        pch = _precompiled_header(facts, toolchain, includes, extra, out, timeout)

    def work(item: tuple[Path, Path]) -> None:
        src, obj = item
        tmp = obj.with_suffix(f".o.{os.getpid()}.tmp")
        flags = extra if pch is None or src.suffix == ".c" else [*extra, "-include", str(pch)]
        _run(_compile_cmd(toolchain, src, tmp, includes, flags), src.name, timeout)
        os.replace(tmp, obj)

    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 2) as pool:
            for f in [pool.submit(work, item) for item in jobs_todo]:
                f.result()
    finally:
        if pch is not None:  # hundreds of MB: not worth keeping for the next few kernels
            shutil.rmtree(pch.parent, ignore_errors=True)
    lib = out / "libtflm.a"
    objects = sorted((out / "obj").glob("*.o"))  # everything built for this tree so far
    if jobs_todo or not lib.is_file():
        tmp = out / f"libtflm.a.{os.getpid()}.tmp"
        tmp.unlink(missing_ok=True)
        _run([toolchain.ar, "rcs", str(tmp), *map(str, objects)], "the TFLM library", timeout)
        os.replace(tmp, lib)
    return Library(path=lib, facts=facts, toolchain=toolchain, objects_built=len(jobs_todo), objects=len(objects))


# The headers nearly every TFLM C++ file parses (flatbuffers' schema alone is most of a kernel's compile
# time), precompiled once per build: each C++ file then compiles 2-3x faster. GCC reads the .gch only when
# the flags match and otherwise parses the header itself; no TFLM source defines a macro before its first
# #include, so including these first changes nothing (objects checked byte-identical with and without).
# The .gch takes ~20 s and ~230 MB: made for a build of at least _PCH_MIN_FILES C++ files, then deleted.
_PCH_MIN_FILES = 8
_PCH_HEADERS = ("tensorflow/lite/c/common.h", "tensorflow/lite/schema/schema_generated.h",
                "tensorflow/lite/core/api/flatbuffer_conversions.h", "tensorflow/lite/kernels/internal/common.h",
                "tensorflow/lite/kernels/internal/quantization_util.h",
                "tensorflow/lite/kernels/internal/tensor_ctypes.h", "tensorflow/lite/kernels/kernel_util.h",
                "tensorflow/lite/micro/kernels/kernel_util.h", "tensorflow/lite/micro/micro_interpreter.h",
                "tensorflow/lite/micro/micro_log.h")


def _precompiled_header(facts: TreeFacts, toolchain: Toolchain, includes: list[Path], extra: list[str],
                        out: Path, timeout: float) -> Optional[Path]:
    """``out/pch/tflm_pch.h`` with its ``.gch`` beside it, or None when the tree lacks these headers or
    they do not precompile (the files then compile without)."""
    if not all((facts.source_root / h).is_file() for h in _PCH_HEADERS):
        return None
    header = out / "pch" / "tflm_pch.h"
    gch = header.with_name(header.name + ".gch")
    header.parent.mkdir(exist_ok=True)
    header.write_text("".join(f'#include "{h}"\n' for h in _PCH_HEADERS))
    tmp = gch.with_name(f"{gch.name}.{os.getpid()}.tmp")
    try:
        _run(_compile_cmd(toolchain, header, tmp, includes, [*extra, "-x", "c++-header"]),
             "the precompiled TFLM headers", timeout)
    except BuildError:
        tmp.unlink(missing_ok=True)
        gch.unlink(missing_ok=True)
        return None
    os.replace(tmp, gch)
    return header


# Main file of each target, relative to the project folder ("{name}" is the project name).
MAIN_FILES = {"arduino": "{name}/{name}.ino", "platformio": "src/main.cpp", "esp-idf": "main/main.cc"}
_WARNINGS = ("-Wall", "-Wextra", "-Werror")


def project_sources(project_dir: Path, target: str, name: str) -> list[Path]:
    """The C++ files of a written project: the main file and the files beside it."""
    main = project_dir / MAIN_FILES[target].format(name=name)
    if not main.is_file():
        raise BuildError(f"{main} is missing: write the project with edgekd.firmware.write_project first.")
    return [main] + sorted(p for p in main.parent.iterdir() if p.suffix in (".cc", ".cpp") and p != main)


def link_project(project_dir: str | os.PathLike, *, target: str, name: str, library: Library,
                 machine_sources: Sequence[Path], out: Path, timeout: float = 600.0) -> Path:
    """Compile a generated project (warnings as errors) and link it with ``library`` into ``out``.

    Args:
        project_dir: The written project.
        target: Its target (``arduino``, ``platformio``, ``esp-idf``).
        name: Its name (the sketch folder of an Arduino project).
        library: TFLM built for the same toolchain.
        machine_sources: The SDK stand-ins and ``main`` of the machine it runs on.
        out: The executable to write.
        timeout: Seconds one compile may take.

    Returns:
        ``out``.
    """
    facts = library.facts
    project_dir = Path(project_dir)
    sources = project_sources(project_dir, target, name)
    includes = [sources[0].parent, SDK / "include"]
    if target != "esp-idf" and not (facts.source_root / "Chirale_TensorFlowLite.h").is_file():
        includes.append(SDK / "include" / "fallback")
    build = out.parent / (out.name + ".obj")
    defines = ["-DTF_LITE_STATIC_MEMORY"] if target == "esp-idf" else ["-DARDUINO=10819"]
    objects = _compile(library, sources, build, includes=includes, extra=[*_WARNINGS, *defines], timeout=timeout)
    objects += _compile(library, machine_sources, build, includes=[SDK / "include"], extra=[], tree=False,
                        prefix="machine__", timeout=timeout)
    _link(library, objects, out, (), f"the {target} project (link)", timeout)
    return out


def link_program(sources: Sequence[Path], *, library: Library, includes: Sequence[Path], out: Path,
                 defines: Sequence[str] = (), link_extra: Sequence[str] = (), timeout: float = 600.0) -> Path:
    """Compile ``sources`` (warnings as errors) and link them with ``library`` into ``out``.

    Args:
        sources: C and C++ files (edgekd's own or generated: they must be warning-free).
        library: TFLM built for the toolchain to use.
        includes: Include folders, before the TFLM tree's.
        out: The executable to write.
        defines: ``-D`` flags.
        link_extra: More flags for the link (e.g. a map file).
        timeout: Seconds one compile may take.

    Returns:
        ``out``.
    """
    objects = _compile(library, sources, out.parent / (out.name + ".obj"), includes=includes,
                       extra=[*_WARNINGS, *defines], timeout=timeout)
    _link(library, objects, out, link_extra, f"{out.name} (link)", timeout)
    return out


def _compile(library: Library, sources: Sequence[Path], build: Path, *, includes: Sequence[Path],
             extra: Sequence[str], timeout: float, tree: bool = True, prefix: str = "") -> list[Path]:
    """Compile each source into ``build`` (``-isystem`` the TFLM tree when ``tree``); the objects."""
    build.mkdir(parents=True, exist_ok=True)
    system = [a for d in include_dirs(library.facts) for a in ("-isystem", str(d))] if tree else []
    objects = []
    for src in sources:
        obj = build / (prefix + src.name + ".o")
        cmd = _compile_cmd(library.toolchain, src, obj, includes, extra)
        lang = ["-x", "c++", "-include", "Arduino.h"] if src.suffix == ".ino" else []
        cmd[-4:-4] = [*system, *lang]  # before "-c SRC -o OBJ"
        _run(cmd, src.name, timeout)
        objects.append(obj)
    return objects


def _link(library: Library, objects: Sequence[Path], out: Path, extra: Sequence[str], what: str,
          timeout: float) -> None:
    tc = library.toolchain
    _run([tc.cxx, *tc.flags, *map(str, objects), str(library.path), *tc.link_flags, *extra, "-lm", "-o", str(out)],
         what, timeout)
