"""Structural rules of the codebase, enforced rather than commented."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_pipeline_imports_no_web_queue_or_database_code():
    """Importing every pipeline module pulls in neither FastAPI, Celery, kombu nor SQLAlchemy."""
    pipeline = ROOT / "workers" / "pipeline"
    modules = sorted(".".join(p.relative_to(pipeline).with_suffix("").parts) for p in pipeline.rglob("*.py")
                     if p.stem != "__init__")
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module('workers.pipeline.' + m)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'fastapi', 'starlette', 'celery', 'kombu', "
        "'sqlalchemy', 'service', 'redis', 'psycopg'})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert len(modules) >= 8
    assert out.stdout.strip() == "", f"pipeline imported {out.stdout.strip()}"


def test_no_torch_load_without_weights_only():
    """Every torch.load in the code base refuses pickles (weights_only=True)."""
    offenders = []
    for path in list((ROOT / "service").rglob("*.py")) + list((ROOT / "workers").rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if "torch.load(" in line and "weights_only=True" not in line:
                offenders.append(f"{path.relative_to(ROOT)}:{number}")
    assert offenders == []
