"""Execute the tutorial notebooks in full mode and save them with their outputs.

The committed notebooks are the product: their outputs come from a real run of this
script, with widget state stored (so a static render on GitHub or nbviewer shows the
widgets' last picture instead of "Error displaying widget") and each notebook's wall time
recorded in ``notebooks/run_times.json`` beside the machine and its load, which is where
README's "full run here" column comes from.

    python scripts/execute_notebooks.py                 # every notebook, full settings
    python scripts/execute_notebooks.py 04 05           # the notebooks whose names start so
    CI=true python scripts/execute_notebooks.py --dry   # smoke mode, outputs not saved

Run it from the repository's environment (``.venv/bin/python``) on an otherwise idle
machine; then ``python scripts/notebook_pictures.py`` refreshes README's pictures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
TIMES = NOTEBOOKS / "run_times.json"


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()}"


def execute(path: Path, timeout: int, save: bool) -> float:
    """Run one notebook top to bottom in its own folder; return its wall time in seconds."""
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        store_widget_state=True,
    )
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start
    if save:
        nbformat.write(notebook, path)
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prefixes", nargs="*", help="run only notebooks whose names start so (00, 04 ...)")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per cell (default 3600)")
    parser.add_argument("--dry", action="store_true", help="execute but do not save outputs or times")
    args = parser.parse_args(argv)

    paths = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if args.prefixes:
        paths = [p for p in paths if any(p.name.startswith(x) for x in args.prefixes)]
    if not paths:
        print("no notebook matches", args.prefixes, file=sys.stderr)
        return 2
    smoke = "CI" in os.environ
    for path in paths:
        load_before = os.getloadavg()[0]
        print(f"executing {path.name} ({'smoke' if smoke else 'full'} mode) ...", flush=True)
        seconds = execute(path, args.timeout, save=not args.dry)
        load_after = os.getloadavg()[0]
        print(f"  {seconds / 60:.1f} min (load {load_before:.1f} -> {load_after:.1f})", flush=True)
        if not args.dry and not smoke:
            times = json.loads(TIMES.read_text()) if TIMES.exists() else {}  # re-read: others may write
            times[path.name] = {
                "seconds": round(seconds, 1),
                "load_before": round(load_before, 2),
                "load_after": round(load_after, 2),
                "machine": _machine(),
                "date": time.strftime("%Y-%m-%d"),
            }
            TIMES.write_text(json.dumps(times, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
