"""Train a small numpy MLP on scikit-learn's digits data, deterministically; save its weights as .npz."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

HERE = Path(__file__).resolve().parent
HIDDEN = 256
EPOCHS = 300


def main() -> Path:
    rng = np.random.default_rng(0)
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = np.eye(10, dtype=np.float32)[digits.target]
    w1 = rng.normal(0, 0.1, (x.shape[1], HIDDEN)).astype(np.float32)
    b1 = np.zeros(HIDDEN, np.float32)
    w2 = rng.normal(0, 0.1, (HIDDEN, 10)).astype(np.float32)
    b2 = np.zeros(10, np.float32)
    for _ in range(EPOCHS):  # full-batch gradient descent on softmax cross-entropy
        hidden = np.maximum(x @ w1 + b1, 0)
        logits = hidden @ w2 + b2
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        grad = (probs - y) / len(x)
        grad_hidden = (grad @ w2.T) * (hidden > 0)
        w2 -= 2.0 * hidden.T @ grad
        b2 -= 2.0 * grad.sum(axis=0)
        w1 -= 2.0 * x.T @ grad_hidden
        b1 -= 2.0 * grad_hidden.sum(axis=0)
    accuracy = float((np.argmax(np.maximum(x @ w1 + b1, 0) @ w2 + b2, axis=1) == digits.target).mean())
    target = HERE / "model" / "weights.npz"
    target.parent.mkdir(exist_ok=True)
    np.savez(target, w1=w1, b1=b1, w2=w2, b2=b2)
    print(f"saved {target.relative_to(HERE)} (training accuracy {accuracy:.3f})")
    return target


if __name__ == "__main__":
    main()
