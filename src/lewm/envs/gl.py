"""Headless OpenGL for the MuJoCo worlds.

MuJoCo (and dm_control) read `MUJOCO_GL` once, when they are imported, so the backend is
chosen before the first import: the user's `MUJOCO_GL` when set, else EGL when libEGL
loads, else OSMesa. With neither, a one-line error names the Debian packages to install.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import sys
import weakref

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


# Envs with an open renderer. Closing them at exit, rather than leaving them to the
# interpreter's teardown, frees their GL contexts while the GL modules are still intact.
_OPEN = weakref.WeakSet()


@atexit.register
def _close_open_envs():
    for env in list(_OPEN):
        env.close()


def close_at_exit(env) -> None:
    """Have `env.close()` run at exit, while GL still works, unless it was closed before."""
    _OPEN.add(env)


def closed(env) -> None:
    """`env` closed its renderer itself."""
    _OPEN.discard(env)


def keep_egl_display() -> None:
    """Drop the atexit hooks that terminate the EGL display.

    MuJoCo (at its first EGL context) and dm_control (on import, which OGBench triggers) each
    register `eglTerminate` with atexit for the one display they share. Hooks run last-in
    first-out, so the display can be terminated by one of them before a context of the other
    is freed, which prints an EGL_BAD_DISPLAY traceback at exit (seen with a dm_control
    context made before the first Cube env). Terminating a display just before the process
    ends buys nothing."""
    if os.environ.get("MUJOCO_GL") == "egl":
        from OpenGL import EGL  # only loadable with the EGL backend

        atexit.unregister(EGL.eglTerminate)
