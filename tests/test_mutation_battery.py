"""The mutation battery (bench/mutants.py) as one test: every planted bug must be caught by the tests
named for it. About 6 minutes on 2 cores; deselect with `-k "not mutation"` for a quick run."""

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_mutation_battery_kills_every_mutant():
    r = subprocess.run([sys.executable, os.path.join(HERE, "bench", "mutants.py"), "--jobs", "2"], cwd=HERE,
                       capture_output=True, text=True, timeout=3000)
    tail = "\n".join(r.stdout.splitlines()[-80:]) + r.stderr[-3000:]
    assert r.returncode == 0, tail
    assert " 0 survived" in r.stdout, tail
