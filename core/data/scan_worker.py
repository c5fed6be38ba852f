"""Worker process of check_workers.py: checks byte ranges of one JSONL file.

Usage (by check_workers.py only): python -m tunedeck.core.data.scan_worker PATH FORMAT REF_LINE KEEP
FEATURES START:END... (FEATURES: the feature keys as a JSON object). Prints one JSON result per range, in order, as soon as each range is done.
"""

from __future__ import annotations

import json
import os
import sys

from .formats import FeatureKeys
from .jsonl_check import scan_range, chunk_to_json


def main(argv: list) -> int:
    if hasattr(os, "nice"):
        os.nice(10)  # a check of a large file never takes a core from the app's keystrokes
    path, ref_format, ref_line, keep, features, *ranges = argv
    keys = FeatureKeys.of(json.loads(features))
    for rng in ranges:
        start, end = (int(x) for x in rng.split(":"))
        chunk = scan_range(path, start, end, ref_format, int(ref_line), -1, int(keep), keys)
        sys.stdout.write(chunk_to_json(chunk) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except BrokenPipeError:
        # The parent stopped reading (cancelled): nothing to report.
        sys.exit(0)
