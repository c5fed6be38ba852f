"""(c): llama.cpp itself loads the GGUF and answers the verification prompts greedily.

Only when ``llama-cpp-python`` is importable (the optional ``tunedeck[llama]`` extra, which
builds llama.cpp from source); otherwise the check says it was skipped and why. llama.cpp's own
tokenizer reads the prompt text (so its reading of the vocabulary is checked too), and its greedy
tokens must equal MLX's, the end-of-sequence token included.
"""

from __future__ import annotations

from pathlib import Path

from .verify import ANSWER_TOKENS, Answer, first_difference


def llama_cpp_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


def llama_cpp_answers(path: Path, tokenizer, prompts: list[list[dict]],
                      max_tokens: int = ANSWER_TOKENS) -> tuple[list[list[int]], list[list[int]]]:
    """llama.cpp's prompt ids and greedy answer ids for each prompt."""
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(path), n_ctx=2048, verbose=False, logits_all=False)
    stops = set(getattr(tokenizer, "eos_token_ids", ()) or ()) | {llm.token_eos()}
    prompt_ids, answers = [], []
    try:
        for messages in prompts:
            text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            ids = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
            prompt_ids.append(list(ids))
            tokens = []
            llm.reset()
            for token in llm.generate(ids, temp=0.0, top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=1.0):
                tokens.append(int(token))
                if token in stops or len(tokens) >= max_tokens:
                    break
            answers.append(tokens)
    finally:
        llm.close()
    return prompt_ids, answers


def llama_cpp_check(path: Path, tokenizer, prompts: list[list[dict]], mlx_answers: list[Answer]) -> dict:
    if not llama_cpp_available():
        return {"skipped": "llama-cpp-python is not installed (pip install 'tunedeck[llama]')"}
    from .verify import prompt_ids as mlx_prompt_ids

    their_prompts, their_answers = llama_cpp_answers(path, tokenizer, prompts)
    for i, (messages, ids) in enumerate(zip(prompts, their_prompts)):
        if ids != mlx_prompt_ids(tokenizer, messages):
            return {"equal": False, "prompts": len(prompts),
                    "summary": f"llama.cpp tokenizes prompt {i + 1} differently"}
    for i, (answer, tokens) in enumerate(zip(mlx_answers, their_answers)):
        at = first_difference(answer.tokens, tokens)
        if at is not None:
            return {"equal": False, "prompts": len(prompts),
                    "summary": f"answers differ at prompt {i + 1}, token {at + 1}",
                    "mlx": answer.text, "llama_cpp": tokenizer.decode(tokens)}
    return {"equal": True, "prompts": len(prompts),
            "summary": f"llama.cpp loads the file and answers {len(prompts)} prompts token for token like MLX",
            "answers": [tokenizer.decode([t for t in tokens if t not in set(tokenizer.eos_token_ids)])
                        for tokens in their_answers]}
