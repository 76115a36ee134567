"""The package (tralgo/__init__.py) stands alone: importing it needs torch and nothing of the project."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_loads_no_module_of_the_project_packages():
    code = ("import json, sys, tralgo; "
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('gan', 'data', 'eval', 'common'))))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            check=True)
    assert json.loads(result.stdout) == []
