"""The tensor APIs honour their jaxtyping annotations at runtime (typed at the API boundary).

The hook (``--jaxtyping-packages=induction_lens,beartype.beartype``) has to be installed before
``induction_lens`` is imported, and it makes the ablation and plotting suites several times
slower, so it is not on for the whole run: this test runs the unit tests of the models, losses,
head scores and circuits in a child pytest with the hook on. Any annotation that disagrees with
what the code passes or returns fails it.
"""

import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
CHECKED = ["test_models.py", "test_losses.py", "test_heads.py", "test_circuits.py"]


@pytest.mark.slow
def test_core_suites_pass_under_runtime_type_checks(tmp_path):
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-m", "not slow", "-p", "no:cacheprovider",
           f"--basetemp={tmp_path / 'inner'}",
           "--jaxtyping-packages=induction_lens,beartype.beartype",
           *[str(TESTS / name) for name in CHECKED]]
    done = subprocess.run(cmd, cwd=TESTS.parent, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "error" not in done.stdout.splitlines()[-1]
