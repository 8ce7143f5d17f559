"""Build and flash a generated project with the toolchain it was made for.

:func:`detect_project` recognises a project folder (``edgekd-project.json``
written by :func:`edgekd.firmware.render`, or the usual files of each
toolchain); :func:`flash_plan` computes the commands, as data;
:func:`run_plan` runs them, printing each one first. Nothing is run by
``--dry-run``, and a missing tool is reported before anything runs.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import shlex
import shutil
import subprocess
from typing import Any, Callable, Optional

from edgekd.errors import InvalidArgumentError, ToolNotFoundError, invalid_value

PROJECT_TYPES = ("arduino", "esp-idf", "platformio", "esptool")

# tool -> how to install it (the error message's fix).
INSTALL_HINTS = {
    "arduino-cli": "install Arduino CLI (e.g. `brew install arduino-cli`, or the install script from the "
                   "Arduino CLI documentation) and put it on PATH",
    "idf.py": "install ESP-IDF >= 5.0 and run `. $IDF_PATH/export.sh` in this shell so idf.py is on PATH",
    "pio": "install PlatformIO Core: `pip install platformio`",
    "esptool.py": "install esptool: `pip install esptool`",
}


@dataclasses.dataclass(frozen=True)
class FlashPlan:
    """What ``edgekd flash`` would run.

    Attributes:
        project_type: One of :data:`PROJECT_TYPES`.
        directory: The project folder (absolute).
        commands: The commands, each an argv list, run in order.
        cwd: Working directory of each command.
        tool: The executable every command needs.
        port: The serial port used (``"PORT"`` when unknown in a dry run).
    """

    project_type: str
    directory: str
    commands: tuple[tuple[str, ...], ...]
    cwd: str
    tool: str
    port: str

    def lines(self) -> list[str]:
        """The commands as shell lines (what is printed)."""
        return [shlex.join(c) for c in self.commands]


def list_serial_ports() -> list[str]:
    """Serial ports found on this machine (pyserial when installed, else a scan of /dev)."""
    try:
        from serial.tools import list_ports  # type: ignore[import-not-found]

        found = [p.device for p in list_ports.comports()]
        if found:
            return sorted(found)
    except Exception:  # pyserial missing or failing: scan ourselves
        pass
    patterns = ("/dev/ttyACM*", "/dev/ttyUSB*", "/dev/cu.usbmodem*", "/dev/cu.usbserial*",
                "/dev/cu.SLAB_USBtoUART*", "/dev/cu.wchusbserial*")
    return sorted({p for pat in patterns for p in glob.glob(pat)})


def _read_marker(directory: str) -> Optional[dict[str, Any]]:
    path = os.path.join(directory, "edgekd-project.json")
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise InvalidArgumentError(f"{path} is not valid JSON ({e}). Re-render the project with "
                                   "`edgekd firmware`, or delete the file.") from None
    if not isinstance(data, dict) or data.get("target") not in ("arduino", "esp-idf", "platformio"):
        raise InvalidArgumentError(f"{path} does not name a target (arduino, esp-idf, platformio). "
                                   "Re-render the project with `edgekd firmware`.")
    return data


def _sketch_dirs(directory: str) -> list[str]:
    """Folders (the project folder or a direct subfolder) holding ``<folder>.ino``."""
    found = []
    for cand in [directory] + sorted(glob.glob(os.path.join(directory, "*", ""))):
        cand = cand.rstrip(os.sep)
        if os.path.isfile(os.path.join(cand, os.path.basename(cand) + ".ino")):
            found.append(cand)
    return found


def _image(directory: str) -> Optional[str]:
    for cand in (os.path.join(directory, "build", "flash_args"), os.path.join(directory, "flash_args")):
        if os.path.isfile(cand):
            return cand
    bins = sorted(glob.glob(os.path.join(directory, "*.bin")))
    return bins[0] if len(bins) == 1 else None


def detect_project(directory: str | os.PathLike) -> tuple[str, dict[str, Any]]:
    """Recognise a firmware project folder.

    ``edgekd-project.json`` decides when present; otherwise ``platformio.ini``
    means PlatformIO, a CMake project including ESP-IDF's ``project.cmake``
    means ESP-IDF, a ``<name>/<name>.ino`` sketch means Arduino, and an
    ESP-IDF ``flash_args`` file or a single ``*.bin`` image means esptool.

    Returns:
        (project type, marker dict — empty when there is no marker).

    Raises:
        InvalidArgumentError: Not a folder, or no project recognised.
    """
    directory = os.path.abspath(os.fspath(directory))
    if not os.path.isdir(directory):
        raise invalid_value("directory", "a project folder written by `edgekd firmware`", directory)
    marker = _read_marker(directory)
    if marker is not None:
        return marker["target"], marker
    if os.path.isfile(os.path.join(directory, "platformio.ini")):
        return "platformio", {}
    cmake = os.path.join(directory, "CMakeLists.txt")
    if os.path.isfile(cmake):
        with open(cmake, encoding="utf-8", errors="replace") as f:
            if "project.cmake" in f.read():
                return "esp-idf", {}
    if _sketch_dirs(directory):
        return "arduino", {}
    if _image(directory):
        return "esptool", {}
    raise InvalidArgumentError(
        f"{directory} is not a firmware project (no edgekd-project.json, platformio.ini, ESP-IDF "
        "CMakeLists.txt, <name>/<name>.ino sketch or flash image). Render one with `edgekd firmware`."
    )


def _pick_port(port: Optional[str], dry_run: bool) -> str:
    if port:
        return port
    ports = list_serial_ports()
    if len(ports) == 1:
        return ports[0]
    if dry_run:
        return "PORT"
    found = ", ".join(ports) if ports else "none"
    raise InvalidArgumentError(
        f"No serial port given and {'several' if ports else 'no'} serial ports found (found: {found}). "
        "Connect the board and pass its `port` (e.g. /dev/ttyACM0)."
    )


def _esptool() -> str:
    for name in ("esptool.py", "esptool"):
        if shutil.which(name):
            return name
    return "esptool.py"


def flash_plan(
    directory: str | os.PathLike,
    *,
    port: Optional[str] = None,
    fqbn: Optional[str] = None,
    env: Optional[str] = None,
    dry_run: bool = False,
    project: Optional[dict[str, Any]] = None,
) -> FlashPlan:
    """Compute the commands that build and flash a project.

    Args:
        directory: The project folder.
        port: Serial port; when ``None`` the only port found is used (a dry
            run prints ``PORT`` when there is not exactly one).
        fqbn: Arduino FQBN overriding the project's board.
        env: PlatformIO environment overriding the project's board.
        dry_run: Whether the plan is only printed (no port needed).
        project: The marker dict, when already known.

    Returns:
        The :class:`FlashPlan`.
    """
    directory = os.path.abspath(os.fspath(directory))
    if project is None:
        kind, marker = detect_project(directory)
    else:
        kind, marker = project["target"], project
    if kind == "esp-idf" and not shutil.which("idf.py") and _image(directory) and not dry_run:
        kind = "esptool"  # prebuilt image, no ESP-IDF here: flash it with esptool
    port = _pick_port(port, dry_run)

    if kind == "arduino":
        sketch = os.path.join(directory, marker["sketch_dir"]) if marker.get("sketch_dir") else None
        if sketch is None:
            dirs = _sketch_dirs(directory)
            if not dirs:
                raise InvalidArgumentError(f"No <name>/<name>.ino sketch in {directory}. Re-render the project.")
            sketch = dirs[0]
        board_fqbn = fqbn or marker.get("fqbn")
        if not board_fqbn:
            raise InvalidArgumentError("The sketch does not name its board. Pass `fqbn` (e.g. "
                                       "arduino:mbed_nano:nano33ble).")
        cmds = (("arduino-cli", "compile", "--fqbn", board_fqbn, sketch),
                ("arduino-cli", "upload", "-p", port, "--fqbn", board_fqbn, sketch))
        return FlashPlan(kind, directory, cmds, directory, "arduino-cli", port)
    if kind == "esp-idf":
        return FlashPlan(kind, directory, (("idf.py", "-p", port, "build", "flash"),), directory, "idf.py", port)
    if kind == "platformio":
        cmd = ["pio", "run", "-d", directory]
        pio_env = env or marker.get("platformio_env")
        if pio_env:
            cmd += ["-e", pio_env]
        cmd += ["-t", "upload", "--upload-port", port]
        return FlashPlan(kind, directory, (tuple(cmd),), directory, "pio", port)
    image = _image(directory)
    if image is None:
        raise InvalidArgumentError(f"No flash image in {directory} (build/flash_args or one *.bin). "
                                   "Build the project first.")
    tool = _esptool()
    chip = marker.get("idf_target") or "auto"
    if os.path.basename(image) == "flash_args":
        cmd = (tool, "--chip", chip, "-p", port, "write_flash", "@flash_args")
        return FlashPlan("esptool", directory, (cmd,), os.path.dirname(image), tool, port)
    cmd = (tool, "--chip", chip, "-p", port, "write_flash", "0x0", image)
    return FlashPlan("esptool", directory, (cmd,), directory, tool, port)


def check_tool(tool: str) -> str:
    """The full path of ``tool``.

    Raises:
        ToolNotFoundError: Not on PATH; the message says how to install it.
    """
    path = shutil.which(tool)
    if path is None:
        hint = INSTALL_HINTS.get(tool, f"install {tool} and put it on PATH")
        raise ToolNotFoundError(f"{tool} is not installed (not found on PATH): {hint}. "
                                "`edgekd flash --dry-run` prints the commands without running them.")
    return path


def run_plan(plan: FlashPlan, *, print_fn: Callable[[str], Any] = print) -> int:
    """Run a plan's commands in order, printing each first; stop at the first failure.

    Returns:
        0 when every command succeeded, else the failing command's exit status.

    Raises:
        ToolNotFoundError: The tool is missing (checked before anything runs).
    """
    check_tool(plan.tool)
    for cmd, line in zip(plan.commands, plan.lines()):
        print_fn(f"$ {line}")
        rc = subprocess.call(list(cmd), cwd=plan.cwd)
        if rc != 0:
            print_fn(f"`{line}` failed with exit status {rc}")
            return rc
    return 0
