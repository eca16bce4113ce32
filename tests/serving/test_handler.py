"""Importing and constructing user handlers, and calling them with only what they declare."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shipyard.errors import HandlerLoadError, PathOutsideProject
from shipyard.serving.handler import HandlerRef, bind, construct, import_handler_class


def _ref(tmp_path: Path, text: str, source: str | None = None, file: str = "handler.py") -> HandlerRef:
    if source is not None:
        (tmp_path / file).write_text(source)
    return HandlerRef(text, tmp_path)


def test_import_and_construct(tmp_path: Path) -> None:
    ref = _ref(
        tmp_path,
        "handler.py:Model",
        "class Model:\n    def __init__(self, c, p):\n        self.c = c\n"
        "    def predict(self, x):\n        return x + self.c['add']\n",
    )
    bound = construct(import_handler_class(ref), ref, {"add": 1}, None)
    assert bound.predict(1, None, None) == 2
    assert bound.predict_batch is None


def test_sibling_modules_import(tmp_path: Path) -> None:
    (tmp_path / "helpers.py").write_text("VALUE = 41\n")
    ref = _ref(
        tmp_path,
        "pkg_handler.py:M",
        "import helpers\nclass M:\n    def __init__(self, c, p): pass\n"
        "    def predict(self, x): return helpers.VALUE + x\n",
        file="pkg_handler.py",
    )
    assert construct(import_handler_class(ref), ref, {}, None).predict(1, None, None) == 42


@pytest.mark.parametrize(
    ("text", "source", "message"),
    [
        ("missing.py:M", None, "file 'missing.py' does not exist"),
        (
            "handler.py:Nope",
            "class Model:\n    def predict(self, x): ...\n",
            "handler.py has no class 'Nope'; classes defined there: Model",
        ),
        ("handler.py:Model", "class Model:\n    pass\n", "needs a predict or predict_batch method"),
        ("handler.py:Model", "def broken(:\n", "importing handler.py failed: SyntaxError"),
        ("handler.py:Model", "import sys\nsys.exit(3)\n", "importing handler.py failed: SystemExit: 3"),
        (
            "handler.py:Model",
            "import not_a_module_anywhere\n",
            "importing handler.py failed: ModuleNotFoundError: No module named 'not_a_module_anywhere'",
        ),
    ],
)
def test_import_errors_say_what_to_fix(tmp_path: Path, text: str, source: str | None, message: str) -> None:
    with pytest.raises(HandlerLoadError, match=message.replace("(", r"\(")):
        import_handler_class(_ref(tmp_path, text, source))


def test_handler_outside_the_project_is_refused(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (tmp_path / "evil.py").write_text("class M:\n    def predict(self, x): ...\n")
    with pytest.raises(PathOutsideProject) as caught:
        import_handler_class(HandlerRef("../evil.py:M", project))
    assert caught.value.message == (
        f"handler file '../evil.py' is outside the project directory {str(project)!r}; move the file into the "
        "project and name it relative to shipyard.yaml (handler: handler.py:Class)"
    )


def test_init_that_raises_carries_the_exception(tmp_path: Path) -> None:
    ref = _ref(
        tmp_path,
        "handler.py:M",
        "class M:\n    def __init__(self, c, p):\n"
        "        raise FileNotFoundError('weights.bin is missing')\n    def predict(self, x): ...\n",
    )
    with pytest.raises(HandlerLoadError) as caught:
        construct(import_handler_class(ref), ref, {}, None)
    assert caught.value.message == (
        "handler 'handler.py:M': M.__init__ raised FileNotFoundError: weights.bin is missing"
    )


class _Declares:
    def predict(self, payload: Any, *, headers: Any = None) -> Any:
        return (payload, headers)

    def predict_batch(self, payloads: list[Any], query: Any = None) -> list[Any]:
        return [(p, q) for p, q in zip(payloads, query, strict=True)]


class _OnlyBatch:
    def predict_batch(self, payloads: list[Any], **kwargs: Any) -> list[Any]:
        return [(p, sorted(kwargs)) for p in payloads]


def test_only_declared_keywords_are_passed() -> None:
    bound = bind(_Declares())
    assert bound.predict(1, {"h": "1"}, {"q": "2"}) == (1, {"h": "1"})
    assert bound.predict_batch is not None
    assert bound.predict_batch([1, 2], [{}, {}], [{"a": "1"}, {"b": "2"}]) == [
        (1, {"a": "1"}),
        (2, {"b": "2"}),
    ]


def test_predict_falls_back_to_a_batch_of_one() -> None:
    bound = bind(_OnlyBatch())
    assert bound.predict(5, {}, {}) == (5, ["headers", "query"])


@pytest.mark.parametrize(
    ("statement", "raised"), [("sys.exit('bye')", "SystemExit: bye"), ("raise KeyboardInterrupt", "KeyboardInterrupt")]
)
def test_init_that_exits_is_a_load_error_too(tmp_path: Path, statement: str, raised: str) -> None:
    source = (
        f"import sys\nclass M:\n    def __init__(self, c, p):\n        {statement}\n    def predict(self, x): ...\n"
    )
    ref = _ref(tmp_path, "handler.py:M", source)
    with pytest.raises(HandlerLoadError) as caught:
        construct(import_handler_class(ref), ref, {}, None)
    assert caught.value.message == f"handler 'handler.py:M': M.__init__ raised {raised}"
