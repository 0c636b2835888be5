"""Installs this checkout's kernelspec into a private Jupyter data directory for the tests."""
import os
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def install_private_kernelspec() -> str:
    data_dir = os.environ.get("TUNELAB_TEST_JUPYTER_DIR") or tempfile.mkdtemp(prefix="tunelab-jupyter-")
    os.environ["JUPYTER_DATA_DIR"] = data_dir
    os.environ["JUPYTER_PATH"] = data_dir
    subprocess.run(["node", str(ROOT / "bin" / "tunelab.js"), "install", "--user"], check=True, capture_output=True)
    return data_dir
