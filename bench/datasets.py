"""Validate and decode uploaded archives of small images: images/s, and peak memory as the archive grows.

Run: .venv/bin/python bench/datasets.py [--sizes 2000 10000]
Builds a zip of N real digit PNGs (scikit-learn's digits, 28×28, in class folders), then in a fresh process
extracts, scans and validates it (every image opened and decoded) and reports wall time and peak RSS.
Peak memory should stay flat as N grows: images are decoded one at a time and not kept.
"""

import argparse
import io
import json
import resource
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import common

CHILD = """
import json, resource, sys, time
from pathlib import Path
from workers.ingest import archive, layout, validate
from workers.ingest.limits import Limits
src, dest = Path(sys.argv[1]), Path(sys.argv[2])
start = time.perf_counter()
archive.extract(src, dest, Limits())
report = validate.validate(dest, layout.scan(dest, Limits()), Limits())
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "valid": report.counts["total"],
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def build_zip(path: Path, n: int) -> None:
    from workers.pipeline.datasets import load_raw

    raw = load_raw("digits")
    pngs = []
    for image in raw.images:
        buf = io.BytesIO()
        image.resize((28, 28)).save(buf, format="PNG")
        pngs.append(buf.getvalue())
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for i in range(n):
            k = i % len(pngs)
            zf.writestr(f"digits/{raw.labels[k]}/{i}.png", pngs[k])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 10000])
    args = parser.parse_args()
    rows = {}
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            archive = Path(tmp) / "upload.zip"
            build_zip(archive, n)
            out = subprocess.run([sys.executable, "-c", CHILD, str(archive), str(Path(tmp) / "files")],
                                 cwd=common.ROOT, capture_output=True, text=True, check=True)
            child = json.loads(out.stdout.strip().splitlines()[-1])
            rows[str(n)] = {"images_per_s": round(child["valid"] / child["seconds"], 1),
                            "peak_rss_mib": round(child["peak_rss_mib"], 1),
                            "archive_mib": round(archive.stat().st_size / 2**20, 2), "valid": child["valid"]}
            print(n, rows[str(n)], flush=True)
    sizes = [str(n) for n in args.sizes]
    common.report({"by_size": rows, "images_per_s": rows[sizes[-1]]["images_per_s"],
                   "peak_rss_growth_mib": round(rows[sizes[-1]]["peak_rss_mib"] - rows[sizes[0]]["peak_rss_mib"], 1)})


if __name__ == "__main__":
    main()
