"""A wide numpy MLP over 8x8 digit images: `predict` for one image, `predict_batch` for many at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from shipyard import BadRequest


class Handler:
    def __init__(self, config: dict[str, Any], model_path: str | None) -> None:
        weights = np.load(Path(model_path or "") / "weights.npz")
        count = len(weights.files) // 2
        self.layers = [(weights[f"w{i}"], weights[f"b{i}"]) for i in range(count)]
        self.top_k = int(config.get("top_k", 3))

    def predict(self, payload: Any) -> Any:
        result = self.predict_batch([payload])[0]
        if isinstance(result, Exception):
            raise result
        return result

    def predict_batch(self, payloads: list[Any]) -> list[Any]:
        """One matrix multiply for the whole batch; a malformed image fails only its own request."""
        images: list[np.ndarray | BadRequest] = [self._image(p) for p in payloads]
        good = [image for image in images if isinstance(image, np.ndarray)]
        answers = iter(self._classify(np.stack(good)) if good else [])
        return [next(answers) if isinstance(image, np.ndarray) else image for image in images]

    def _classify(self, images: np.ndarray) -> list[dict[str, Any]]:
        logits = images
        for index, (weights, bias) in enumerate(self.layers):
            logits = logits @ weights + bias
            if index < len(self.layers) - 1:
                logits = np.maximum(logits, 0)
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        top = np.argsort(-probs, axis=1)[:, : self.top_k]
        return [
            {"digit": int(best[0]), "top": [{"digit": int(d), "p": round(float(row[d]), 4)} for d in best]}
            for best, row in zip(top, probs, strict=True)
        ]

    @staticmethod
    def _image(payload: Any) -> np.ndarray | BadRequest:
        pixels = payload.get("pixels") if isinstance(payload, dict) else payload
        try:
            image = np.asarray(pixels, dtype=np.float32).reshape(-1)
        except (TypeError, ValueError):
            return BadRequest('send {"pixels": [64 numbers from 0 to 16]} (an 8x8 image, row by row)')
        if image.shape != (64,):
            return BadRequest(f"expected 64 pixel values (an 8x8 image), got {image.size}")
        return image / 16.0
