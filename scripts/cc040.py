"""cottoncandy 0.4.0 in its own venv, driven by the benchmarks (``bench_api.py``, ``bench_mount.py``).

0.4.0 pins ``boto3<1.36``, so it never shares the project's venv: :func:`cc040_python`
reuses ``.venv-cc040`` in the repository (gitignored) or creates it with
``pip install cottoncandy==0.4.0 dask[array]`` (dask only for its
``download_dask_array``), unless the caller names an interpreter that has it.
Each call runs one operation in a fresh 0.4.0 process with ``HOME`` in a
temporary directory (importing 0.4.0 writes ``~/.config/cottoncandy/options.cfg``)
and credentials in its environment, never on its command line; the process
times the operation itself, so interpreter start-up is not counted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
VENV = REPO / ".venv-cc040"

# Runs inside the 0.4.0 venv. argv: operation, key, and for writes the size in MiB and the dask part size.
_DRIVER = r"""
import hashlib, json, os, sys, time
import numpy as np
import cottoncandy as cc

def smooth(mib):
    return np.cumsum(np.random.default_rng(0).standard_normal(mib << 18, dtype=np.float32))

op, key = sys.argv[1], sys.argv[2]
cci = cc.get_interface(os.environ["CC040_BUCKET"], ACCESS_KEY=os.environ["CC040_ACCESS_KEY"],
                       SECRET_KEY=os.environ["CC040_SECRET_KEY"], endpoint_url=os.environ["CC040_ENDPOINT"],
                       verbose=False)
if op in ("upload_raw_array", "upload_dask_array"):
    arr = smooth(int(sys.argv[3]))
    start = time.perf_counter()
    if op == "upload_raw_array":
        cci.upload_raw_array(key, arr)  # 0.4.0's default: gzip (level 9) below 2 GB
    else:
        cci.upload_dask_array(key, arr, buffersize=int(sys.argv[4]))
    seconds = time.perf_counter() - start
else:
    start = time.perf_counter()
    arr = cci.download_raw_array(key) if op == "download_raw_array" else cci.download_dask_array(key).compute()
    seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "sha256": hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest(),
                  "nbytes": int(arr.nbytes)}))
"""


def smooth_array(mib: int) -> np.ndarray:
    """The benchmarks' gzip data, as the 0.4.0 driver makes it: float32 cumulative sum of noise, ``mib`` MiB."""
    return np.cumsum(np.random.default_rng(0).standard_normal(mib << 18, dtype=np.float32))


def cc040_python(python: str | None = None) -> str:
    """An interpreter with cottoncandy 0.4.0: ``python`` if given, else ``.venv-cc040`` (created on first use)."""
    if python:
        return python
    interpreter = VENV / "bin" / "python"
    if not interpreter.exists():
        print(f"creating {VENV} with cottoncandy 0.4.0 (once) ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(interpreter), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        "cottoncandy==0.4.0", "dask[array]"], check=True)
    return str(interpreter)


class CC040:
    """Run 0.4.0 operations against one bucket of a server.

    Parameters
    ----------
    python : str
        Interpreter with cottoncandy 0.4.0 (see :func:`cc040_python`).
    server : tests.servers.S3Server
    bucket : str
    home : Path
        Directory used as ``HOME`` (0.4.0 writes its config file there).
    """

    def __init__(self, python: str, server, bucket: str, home: Path):
        self.python = python
        self.home = home  # also the working directory: from the repository, ``import cottoncandy`` finds ours
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CC_", "PYTHON"))}
        self.env.update(HOME=str(home), CC040_BUCKET=bucket, CC040_ACCESS_KEY=server.access_key,
                        CC040_SECRET_KEY=server.secret_key, CC040_ENDPOINT=server.endpoint_url)

    def has_dask(self) -> bool:
        """Whether 0.4.0's ``download_dask_array`` can run (it needs dask)."""
        return subprocess.run([self.python, "-c", "import dask.array"], env=self.env, cwd=self.home,
                              capture_output=True, check=False).returncode == 0

    def run(self, op: str, key: str, *args: object) -> dict:
        """Run ``op`` (``upload_raw_array``, ``upload_dask_array``, ``download_raw_array``,
        ``download_dask_array``) on ``key``; return ``{"seconds", "sha256", "nbytes"}``."""
        result = subprocess.run([self.python, "-c", _DRIVER, op, key, *map(str, args)], env=self.env,
                                cwd=self.home, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"cottoncandy 0.4.0 {op} {key} failed: {result.stderr.strip()[-2000:]}")
        return json.loads(result.stdout.strip().splitlines()[-1])
