"""The Python programs of the top-level README.md run as written."""

from __future__ import annotations

import pathlib
import re
import shutil
import subprocess
import sys

README = pathlib.Path(__file__).resolve().parents[3] / "README.md"


def test_the_training_loop_example_runs_and_prints_what_it_says(tmp_path):
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## The training loop"):text.index("## Install")]
    (program,) = re.findall(r"^```python\n(.*?)^```", section, re.S | re.M)
    shutil.rmtree("/tmp/run1", ignore_errors=True)
    try:
        out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120, check=True)
    finally:
        shutil.rmtree("/tmp/run1", ignore_errors=True)
    assert out.stdout.strip() == "300 [200, 300]", out.stdout + out.stderr
