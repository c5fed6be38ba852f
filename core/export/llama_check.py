"""(c): llama.cpp itself loads the GGUF and answers the verification prompts greedily.

Only when ``llama-cpp-python`` is importable (the optional ``tunedeck[llama]`` extra, which
builds llama.cpp from source); otherwise the check says it was skipped and why.
"""

from __future__ import annotations

from pathlib import Path


def llama_cpp_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


def llama_cpp_check(path: Path, tokenizer, prompts: list[list[dict]], mlx_answers) -> dict:
    if not llama_cpp_available():
        return {"skipped": "llama-cpp-python is not installed (pip install 'tunedeck[llama]')"}
    return {"skipped": "not yet"}
