"""Train a wide numpy MLP on scikit-learn's digits data, deterministically; save its layers as .npz.

The hidden layers are wide on purpose (34 MB of float32 weights): one image at a time, every request
streams all the weights through the CPU; a batch of 64 reuses each weight 64 times. That is the case
dynamic batching exists for.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

HERE = Path(__file__).resolve().parent
SIZES = (64, 2048, 2048, 2048, 10)
EPOCHS = 4
BATCH = 64
LEARNING_RATE = 0.02


def forward(x: np.ndarray, layers: list[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
    """Activations of every layer, input first; ReLU between layers, raw logits last."""
    activations = [x]
    for index, (weights, bias) in enumerate(layers):
        out = activations[-1] @ weights + bias
        activations.append(out if index == len(layers) - 1 else np.maximum(out, 0))
    return activations


def train_step(x: np.ndarray, y: np.ndarray, layers: list[tuple[np.ndarray, np.ndarray]]) -> None:
    activations = forward(x, layers)
    logits = activations[-1]
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    grad = (probs - y) / len(x)  # softmax cross-entropy
    for index in reversed(range(len(layers))):
        weights, bias = layers[index]
        previous = activations[index]
        grad_previous = (grad @ weights.T) * (previous > 0) if index else None
        weights -= LEARNING_RATE * previous.T @ grad
        bias -= LEARNING_RATE * grad.sum(axis=0)
        if grad_previous is not None:
            grad = grad_previous


def main() -> Path:
    rng = np.random.default_rng(0)
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = np.eye(10, dtype=np.float32)[digits.target]
    layers = [
        (rng.normal(0, np.sqrt(2 / n_in), (n_in, n_out)).astype(np.float32), np.zeros(n_out, np.float32))
        for n_in, n_out in itertools.pairwise(SIZES)
    ]
    for _ in range(EPOCHS):
        order = rng.permutation(len(x))
        for start in range(0, len(x), BATCH):
            chosen = order[start : start + BATCH]
            train_step(x[chosen], y[chosen], layers)
    accuracy = float((forward(x, layers)[-1].argmax(axis=1) == digits.target).mean())
    target = HERE / "model" / "weights.npz"
    target.parent.mkdir(exist_ok=True)
    arrays = {f"w{i}": w for i, (w, _) in enumerate(layers)} | {f"b{i}": b for i, (_, b) in enumerate(layers)}
    np.savez(target, **arrays)
    print(f"saved {target.relative_to(HERE)} (training accuracy {accuracy:.3f})")
    return target


if __name__ == "__main__":
    main()
