"""A synthetic task with a checkable answer: two-digit addition over tokenised digits.

Prompt (6 tokens): ``a1 a0 + b1 b0 =`` with zero-padded operands in [0, 99].  Response: the
digits of a + b, most significant first, without leading zeros, then the end token; at most
4 tokens.  Everything is generated from a seed; nothing is downloaded.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

PLUS, EQUALS, END, PAD = 10, 11, 12, 13
VOCAB_SIZE = 14
PROMPT_LEN = 6
MAX_ANSWER_LEN = 4  # up to three digits (199 at most... 198) and the end token


def make_problems(seed: int, n: int, exclude: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray]:
    """``n`` distinct problems drawn without replacement from the 10,000 pairs (a, b).

    Args:
      exclude: [M, 2] operand pairs not to draw (e.g. the evaluation set when drawing training problems).

    Returns:
      prompts: [n, 6] int32 tokens.  operands: [n, 2] int32 (a, b).
    """
    pairs = np.stack(np.meshgrid(np.arange(100), np.arange(100), indexing="ij"), -1).reshape(-1, 2)
    if exclude is not None and len(exclude):
        keep = ~np.isin(pairs[:, 0] * 100 + pairs[:, 1], exclude[:, 0] * 100 + exclude[:, 1])
        pairs = pairs[keep]
    if n > len(pairs):
        raise ValueError(f"only {len(pairs)} distinct problems are left, asked for {n}")
    operands = pairs[np.random.default_rng(seed).choice(len(pairs), size=n, replace=False)].astype(np.int32)
    return encode_prompts(operands), operands


def encode_prompts(operands: np.ndarray) -> np.ndarray:
    """[n, 2] operands -> [n, 6] prompt tokens."""
    a, b = operands[:, 0], operands[:, 1]
    cols = [a // 10, a % 10, np.full_like(a, PLUS), b // 10, b % 10, np.full_like(a, EQUALS)]
    return np.stack(cols, axis=1).astype(np.int32)


def answer_tokens(answers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Target responses for supervised training: [n] ints -> tokens [n, 4] (digits, end, pad)
    and mask [n, 4] (1 on the digits and the end token)."""
    tokens = np.full((len(answers), MAX_ANSWER_LEN), PAD, np.int32)
    mask = np.zeros((len(answers), MAX_ANSWER_LEN), np.float32)
    for i, value in enumerate(answers):
        digits = [int(c) for c in str(int(value))] + [END]
        tokens[i, :len(digits)] = digits
        mask[i, :len(digits)] = 1.0
    return tokens, mask


def extract_answer(response: np.ndarray) -> Optional[int]:
    """The integer a response states, or None when it is not digits followed by the end token
    (an empty answer, a non-digit, a leading zero, or no end token within the length)."""
    digits = []
    for token in np.asarray(response).tolist():
        if token == END:
            if not digits or (len(digits) > 1 and digits[0] == 0):
                return None
            return int("".join(map(str, digits)))
        if not 0 <= token <= 9:
            return None
        digits.append(token)
    return None


def true_answer(prompt: np.ndarray) -> int:
    """a + b read back from the prompt tokens."""
    p = np.asarray(prompt)
    return int(p[0] * 10 + p[1] + p[3] * 10 + p[4])


def reward(prompt: np.ndarray, response: np.ndarray) -> float:
    """The verifiable reward: 1.0 when the response states a + b, else 0.0."""
    return float(extract_answer(response) == true_answer(prompt))
