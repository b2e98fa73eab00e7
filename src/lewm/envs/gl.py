"""Headless OpenGL for the MuJoCo worlds.

MuJoCo (and dm_control) read `MUJOCO_GL` once, when they are imported, so the backend is
chosen before the first import: the user's `MUJOCO_GL` when set, else EGL when libEGL
loads, else OSMesa. With neither, a one-line error names the Debian packages to install.
"""

from __future__ import annotations

import ctypes
import os
import sys

from lewm.errors import LewmError

# backend -> the shared libraries that provide it, and the Debian package for each
BACKENDS = {
    "egl": (("libEGL.so.1", "libEGL.so"), "libegl1"),
    "osmesa": (("libOSMesa.so.8", "libOSMesa.so.6", "libOSMesa.so"), "libosmesa6"),
}
INSTALL_HINT = ("install EGL (apt-get install libegl1 libgl1-mesa-dri) or OSMesa "
                "(apt-get install libosmesa6), or set MUJOCO_GL")


def _loads(names) -> bool:
    for name in names:
        try:
            ctypes.CDLL(name)
            return True
        except OSError:
            continue
    return False


def configure() -> str:
    """Set MUJOCO_GL (and PyOpenGL's platform to match) unless the user already has; returns
    the backend. Must run before mujoco or dm_control is first imported."""
    chosen = os.environ.get("MUJOCO_GL")
    if not chosen and "mujoco" in sys.modules:
        # Too late: mujoco chose its backend (GLFW, which needs a display) when imported.
        raise LewmError("mujoco was imported before lewm could choose a headless GL backend: "
                        "set MUJOCO_GL=egl (or osmesa) before importing it, or import lewm "
                        "first")
    if not chosen:
        chosen = next((b for b, (libs, _) in BACKENDS.items() if _loads(libs)), None)
        if chosen is None:
            raise LewmError(f"no headless OpenGL backend for MuJoCo rendering: {INSTALL_HINT}")
        os.environ["MUJOCO_GL"] = chosen
    if chosen in BACKENDS:
        os.environ.setdefault("PYOPENGL_PLATFORM", chosen)
    return chosen


def render_failed(error: Exception) -> LewmError:
    """The one-line error for a renderer that could not be created with the chosen backend."""
    backend = os.environ.get("MUJOCO_GL", "?")
    return LewmError(f"MuJoCo could not render with MUJOCO_GL={backend} "
                     f"({type(error).__name__}: {error}); {INSTALL_HINT}")
