"""Drive a real JupyterLab, Notebook 7 or Voila in headless Chromium (Debian's /usr/bin/chromium)
with Playwright.

Used by the browser tests (tests/browser/) and by benchmarks/bench_widget.py.  The
pitfalls this module avoids (see the project's RECIPES):

* a server on a fixed port left over from an earlier run answers the next run: the port is
  a free one, the token random, the server runs in its own process group and is shut down
  through its API, then killed as a group; the kernel (own session) is killed by pid;
* "Run All" sent before the kernel is connected is dropped: wait until the notebook
  session's kernel reports ``connectionStatus == 'connected'`` and ``status == 'idle'``
  (read through ``window.jupyterapp``, which ``--LabApp.expose_app_in_browser`` exposes);
* mouse events sent while the canvas still moves (the page lays out as outputs arrive)
  land offset: scroll it into view and wait until its bounding box is stable;
* the kernel writes results atomically and the test polls for complete files.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

CHROMIUM = os.environ.get("SIMWIDGETS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REPO_ROOT = Path(__file__).resolve().parents[2]
CANVAS = ".simwidgets-scribble-canvas canvas"


def missing_requirements() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        return f"Chromium not found at {CHROMIUM} (apt-get install chromium; never 'playwright install')"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the Python package playwright is not installed (pip install playwright)"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_notebook(path: Path, cells: list[str]) -> Path:
    """A notebook of code cells, with the python3 kernelspec (so no kernel dialog appears)."""
    notebook = {
        "cells": [
            {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": source}
            for source in cells
        ],
        "metadata": {
            "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path.write_text(json.dumps(notebook, indent=1))
    return path


def read_json_when(path: Path, predicate, timeout: float = 20.0, interval: float = 0.01):
    """Poll a JSON file (written atomically by the kernel) until ``predicate(data)``; return data."""
    deadline = time.monotonic() + timeout
    data = None
    while time.monotonic() < deadline:
        try:
            data = json.loads(Path(path).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            data = None
        if data is not None and predicate(data):
            return data
        time.sleep(interval)
    raise TimeoutError(f"{path} did not reach the expected state within {timeout} s; last content: {data!r}"[:2000])


class JupyterLab:
    """A JupyterLab (or, with ``app="notebook"``, Notebook 7) server on a free port with a
    random token, in its own process group."""

    def __init__(self, root: Path, log_path: Path | None = None, app: str = "lab"):
        if app not in ("lab", "notebook"):
            raise ValueError(f"app must be 'lab' or 'notebook'; got {app!r}")
        self.app = app
        self.root = Path(root)
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.log_path = Path(log_path or self.root / "jupyter.log")
        self.process: subprocess.Popen | None = None
        self.kernel_pids: list[int] = []

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, notebook: str) -> str:
        if self.app == "notebook":
            return f"{self.base}/notebooks/{notebook}?token={self.token}"
        return f"{self.base}/lab/tree/{notebook}?token={self.token}&reset"

    def start(self, timeout: float = 60.0, retries: int = 2) -> "JupyterLab":
        private = self.root / ".jupyter-private"
        settings = private / "settings" / "@jupyterlab" / "apputils-extension"
        settings.mkdir(parents=True, exist_ok=True)
        if self.app == "lab":
            # no "receive Jupyter news?" toast over the notebook, no update check (Notebook 7
            # has no such plugin and reports a page error for its settings)
            (settings / "notification.jupyterlab-settings").write_text(
                json.dumps({"fetchNews": "false", "checkForUpdates": False})
            )
        env = dict(os.environ)
        env.update(
            JUPYTER_CONFIG_DIR=str(private / "config"),
            JUPYTER_RUNTIME_DIR=str(private / "runtime"),
            PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")])),
        )
        app_class = "LabApp" if self.app == "lab" else "JupyterNotebookApp"
        command = [
            sys.executable, "-m", "jupyter", self.app,
            "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={self.port}",
            "--ServerApp.port_retries=0",
            f"--ServerApp.token={self.token}",
            f"--ServerApp.root_dir={self.root}",
            f"--{app_class}.expose_app_in_browser=True",
            f"--{app_class}.user_settings_dir={private / 'settings'}",
            f"--{app_class}.workspaces_dir={private / 'workspaces'}",
            "--ServerApp.terminals_enabled=False",
        ]
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            command, cwd=self.root, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._log.close()
                if "already in use" in self.log_tail() and retries > 0:  # the free port was taken meanwhile
                    self.port = free_port()
                    self.process = None
                    return self.start(timeout, retries - 1)
                raise RuntimeError(f"jupyter {self.app} exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.base}/api/status?token={self.token}", timeout=2) as reply:
                    if reply.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"jupyter {self.app} did not answer within {timeout} s:\n{self.log_tail()}")

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self) -> None:
        """Shut down through the API (which stops kernels), then kill the group and any kernel left."""
        if self.process is None:
            return
        if self.process.poll() is None:
            try:
                request = urllib.request.Request(
                    f"{self.base}/api/shutdown", method="POST", headers={"Authorization": f"token {self.token}"}
                )
                urllib.request.urlopen(request, timeout=5).close()
                self.process.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                pass
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if self.process.poll() is not None:
                break
            try:
                os.killpg(self.process.pid, sig)
                self.process.wait(timeout=5)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        for pid in self.kernel_pids:
            _kill_group_of(pid)
        self.process = None
        if not self._log.closed:
            self._log.close()

    def __enter__(self) -> "JupyterLab":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class Voila:
    """``voila`` serving the notebooks of ``root`` on a free port with a random token, in its own
    process group (kernels run in the root folder, like JupyterLab's).

    Open a notebook with ``page.goto(voila.url("name.ipynb"))``: Voila executes it while the
    page loads and shows only its outputs.  There is no shutdown API: :meth:`stop` sends
    SIGTERM to the group (Voila then shuts its kernels down), SIGKILL if that is not enough,
    and kills any kernel whose pid the test recorded in ``kernel_pids``.
    """

    def __init__(self, root: Path, log_path: Path | None = None, env: dict | None = None):
        self.root = Path(root)
        self.extra_env = dict(env or {})
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.log_path = Path(log_path or self.root / "voila.log")
        self.process: subprocess.Popen | None = None
        self.kernel_pids: list[int] = []

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, notebook: str) -> str:
        return f"{self.base}/voila/render/{notebook}?token={self.token}"

    def start(self, timeout: float = 60.0, retries: int = 2) -> "Voila":
        private = self.root / ".voila-private"
        env = dict(os.environ)
        env.update(
            JUPYTER_CONFIG_DIR=str(private / "config"),
            JUPYTER_RUNTIME_DIR=str(private / "runtime"),
            JUPYTER_DATA_DIR=str(private / "data"),  # its notebook-signing key goes here, not in ~
            PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")])),
        )
        env.update(self.extra_env)
        command = [
            sys.executable, "-m", "voila", str(self.root),
            "--no-browser", "--Voila.ip=127.0.0.1", f"--Voila.port={self.port}", "--Voila.port_retries=0",
            f"--Voila.token={self.token}", "--VoilaConfiguration.show_tracebacks=True",
        ]
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            command, cwd=self.root, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._log.close()
                if "already in use" in self.log_tail() and retries > 0:
                    self.port = free_port()
                    self.process = None
                    return self.start(timeout, retries - 1)
                raise RuntimeError(f"voila exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                # the tree page: answers once the server is up, starts no kernel
                with urllib.request.urlopen(f"{self.base}/voila/tree?token={self.token}", timeout=2) as reply:
                    if reply.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"voila did not answer within {timeout} s:\n{self.log_tail()}")

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process is None:
            return
        # kernels run in sessions of their own: note them before their parent goes
        self.kernel_pids.extend(_children_of(self.process.pid))
        for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
            if self.process.poll() is not None:
                break
            try:
                os.killpg(self.process.pid, sig)
                self.process.wait(timeout=wait)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        for pid in self.kernel_pids:
            _kill_group_of(pid)
        self.process = None
        if not self._log.closed:
            self._log.close()

    def __enter__(self) -> "Voila":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _children_of(pid: int) -> list[int]:
    """Pids of the live processes whose parent is ``pid`` (read from /proc)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[1] == str(pid):
            children.append(int(stat.parent.name))
    return children


def _kill_group_of(pid: int) -> None:
    """Kill a kernel left behind (and its children), if that pid is still a kernel (not a reused pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return
    if b"ipykernel" not in cmdline:
        return
    try:
        os.killpg(os.getpgid(pid), signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def launch_browser(playwright):
    """Headless Debian Chromium (never Playwright's own download); a fresh profile per launch."""
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


KERNEL_READY_JS = """() => {
    const app = window.jupyterapp;
    if (!app || !app.shell) return false;
    const panel = app.shell.currentWidget;
    if (!panel || !panel.sessionContext || !panel.content || !panel.content.widgets) return false;
    const session = panel.sessionContext.session;
    const kernel = session && session.kernel;
    return !!kernel && kernel.connectionStatus === 'connected' && kernel.status === 'idle';
}"""


def open_and_run(page, lab: JupyterLab, notebook: str, timeout: float = 60.0) -> None:
    """Open a notebook, wait for a connected idle kernel, then run all cells."""
    page.goto(lab.url(notebook), wait_until="domcontentloaded", timeout=timeout * 1000)
    page.wait_for_function(KERNEL_READY_JS, timeout=timeout * 1000, polling=100)
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")


def stable_box(page, selector: str = CANVAS, timeout: float = 30.0) -> dict:
    """Scroll the element into view and return its bounding box once it stops moving."""
    locator = page.locator(selector).first
    locator.wait_for(state="visible", timeout=timeout * 1000)
    deadline = time.monotonic() + timeout
    previous = None
    while time.monotonic() < deadline:
        locator.scroll_into_view_if_needed()
        box = locator.bounding_box()
        if box is not None and box == previous and box["width"] > 0:
            return box
        previous = box
        time.sleep(0.25)
    raise TimeoutError(f"{selector} kept moving for {timeout} s")


def canvas_to_page(box: dict, canvas_size: tuple[int, int], x: float, y: float) -> tuple[float, float]:
    """Canvas pixel ``(x, y)`` to page coordinates, for a canvas shown in ``box`` (CSS-scaled or not)."""
    ch, cw = canvas_size
    return box["x"] + x * box["width"] / cw, box["y"] + y * box["height"] / ch


def page_to_canvas(box: dict, canvas_size: tuple[int, int], px: float, py: float) -> tuple[float, float]:
    ch, cw = canvas_size
    return (px - box["x"]) * cw / box["width"], (py - box["y"]) * ch / box["height"]


def drag(page, box: dict, canvas_size: tuple[int, int], points, steps: int = 4, release=True) -> list[tuple[float, float]]:
    """Press at the first canvas point, move through the others (``steps`` events per segment).

    Returns the canvas coordinates of every mouse event actually sent (page positions
    converted back), which is what the kernel should have received.
    """
    sent = []
    page_points = [canvas_to_page(box, canvas_size, x, y) for x, y in points]
    page.mouse.move(*page_points[0])
    page.mouse.down()
    sent.append(page_points[0])
    for (x0, y0), (x1, y1) in zip(page_points, page_points[1:]):
        for k in range(1, steps + 1):
            position = (x0 + (x1 - x0) * k / steps, y0 + (y1 - y0) * k / steps)
            page.mouse.move(*position)
            sent.append(position)
    if release:
        page.mouse.up()
    return [page_to_canvas(box, canvas_size, px, py) for px, py in sent]


def canvas_signature_js() -> str:
    """JS expression defining ``sig(canvas)``: a cheap checksum of a canvas's pixels."""
    return """
    const sig = (c) => {
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let s = 0;
        for (let i = 0; i < d.length; i += 61) s = (Math.imul(s, 31) + d[i]) | 0;
        return s;
    };"""


def widget_notebook_cells(result_path: Path, pid_path: Path, setup: str, extra: str = "") -> list[str]:
    """Cells that show a widget ``w`` built by ``setup`` and report its state to ``result_path``.

    After every change of the scribbles and every frame change, the kernel writes (atomically)
    ``{"seq", "kind", "time", "frame_idx", "object_id", "scribbles"}``.
    """
    return [
        "import json, os, sys, time\n"
        "import simwidgets as sw\n"
        "from simwidgets.scribbles import atomic_write_text\n"
        "from simwidgets.widgets import ScribbleWidget\n"
        f"atomic_write_text({str(pid_path)!r}, json.dumps({{'pid': os.getpid()}}))\n",
        setup
        + "\n_seq = [0]\n"
        "def _report(kind, when, scribbles):\n"
        "    _seq[0] += 1\n"
        f"    atomic_write_text({str(result_path)!r}, json.dumps({{'seq': _seq[0], 'kind': kind, 'time': when,\n"
        "        'frame_idx': w.frame_idx, 'object_id': w.object_id, 'canvas_size': list(w.canvas.canvas_size),\n"
        "        'scribbles': scribbles.to_dict()}))\n"
        "w.on_change(lambda e: _report(e.kind, e.time, e.scribbles))\n"
        "w.canvas.observe(lambda c: _report('frame', time.time(), w.scribbles), names='frame_idx')\n"
        "_report('ready', time.time(), w.scribbles)\n"
        + extra
        + "w",
    ]


def distance_to_polyline(points, polyline) -> np.ndarray:
    """Distance of each point to the polyline (both ``(N, 2)``)."""
    points, polyline = np.asarray(points, float), np.asarray(polyline, float)
    if len(polyline) == 1:
        return np.hypot(*(points - polyline[0]).T)
    a, b = polyline[:-1][None], polyline[1:][None]
    p = points[:, None]
    ab = b - a
    t = np.clip(((p - a) * ab).sum(-1) / np.maximum((ab ** 2).sum(-1), 1e-12), 0, 1)
    return np.sqrt(((a + t[..., None] * ab - p) ** 2).sum(-1)).min(axis=1)


def check_stroke(stroke: dict, drawn: list, canvas_size, object_id: int, tolerance: float = 3.0) -> None:
    """The kernel's stroke (DAVIS dict, normalised path) follows the mouse's canvas points ``drawn``:
    same object, same ends and every point within ``tolerance`` canvas pixels of the other path."""
    ch, cw = canvas_size
    path = np.asarray(stroke["path"]) * [cw, ch]
    drawn = np.asarray(drawn)
    assert stroke["object_id"] == object_id, (stroke["object_id"], object_id)
    assert np.hypot(*(path[0] - drawn[0])) <= tolerance, (path[0], drawn[0])
    assert np.hypot(*(path[-1] - drawn[-1])) <= tolerance, (path[-1], drawn[-1])
    # every kernel point lies on the mouse's path, and the mouse's path is covered
    assert distance_to_polyline(path, drawn).max() <= tolerance
    assert distance_to_polyline(drawn, path).max() <= tolerance
    assert len(path) >= 3
