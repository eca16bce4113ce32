"""Load shipyard.yaml into a `Project`, turning every problem into one readable line.

A line names the file, the key path (the API by its name), what is wrong and the value found, for example
`shipyard.yaml: iris.batching.max_batch_size: must be >= 1, got 0 (line 7)`.
"""

from __future__ import annotations

import os
import types
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from shipyard.errors import ConfigError
from shipyard.spec.models import KINDS, APISpec, BatchAPI, Project, RealtimeAPI, TrafficSplitter

SPEC_FILENAMES = ("shipyard.yaml", "shipyard.yml")
_KIND_MODELS: dict[str, type[BaseModel]] = {
    "RealtimeAPI": RealtimeAPI,
    "BatchAPI": BatchAPI,
    "TrafficSplitter": TrafficSplitter,
}
_API_LIST = TypeAdapter(list[APISpec])


def find_spec_file(path: str | os.PathLike[str]) -> Path:
    """The spec file for a project directory or a yaml file path."""
    target = Path(path)
    if target.is_dir():
        for name in SPEC_FILENAMES:
            if (target / name).is_file():
                return target / name
        raise ConfigError([f"{display_path(target)}: no shipyard.yaml here; create one that lists your APIs"])
    if target.is_file():
        return target
    raise ConfigError([f"{display_path(target)}: no such file or directory; pass a project directory or a yaml file"])


def load(path: str | os.PathLike[str]) -> Project:
    """Read and validate a project; raises ConfigError listing every problem at once."""
    source = find_spec_file(path)
    shown = display_path(source)
    node, data = _parse_yaml(source, shown)
    if data is None:
        raise ConfigError([f"{shown}: the file is empty; list your APIs, starting with '- name: ...'"])
    if not isinstance(data, list):
        raise ConfigError(
            [f"{shown}: must be a list of APIs, got a {type(data).__name__}; start each API with '- name: ...'"]
        )
    try:
        apis = _API_LIST.validate_python(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, data, node, shown)) from None
    problems = _cross_check(apis, shown)
    if problems:
        raise ConfigError(problems)
    return Project(apis=apis, directory=str(source.parent.resolve()), source=str(source.resolve()))


def _parse_yaml(source: Path, shown: str) -> tuple[yaml.Node | None, Any]:
    try:
        text = source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{shown}: cannot read the file: {exc}"]) from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        # before constructing: construction flattens merge keys (`<<: *anchor`) into each mapping's own keys
        duplicates = _duplicate_keys(node, shown)
        if duplicates:
            raise ConfigError(duplicates)
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{shown}{where}: not valid YAML: {problem}"]) from None
    finally:
        loader.dispose()
    return node, data


def _duplicate_keys(root: yaml.Node | None, shown: str) -> list[str]:
    """YAML keeps the last of two equal keys without a word; a spec that says a thing twice is refused. Only
    the keys written in a mapping count: a merge key's (`<<`) are defaults that those written override."""
    problems: list[tuple[int, str]] = []
    pending, visited = [root], set()
    while pending:
        node = pending.pop()
        if node is None or id(node) in visited:
            continue
        visited.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first: dict[str, int] = {}
            for key, value in node.value:
                pending.append(value)
                if not isinstance(key, yaml.ScalarNode) or key.value == "<<":
                    continue
                line = key.start_mark.line + 1
                if key.value in first:
                    problems.append(
                        (
                            line,
                            f"{shown}:{line}: duplicate key {key.value!r} (first on line {first[key.value]}); "
                            "keep one of them",
                        )
                    )
                else:
                    first[key.value] = line
        elif isinstance(node, yaml.SequenceNode):
            pending.extend(node.value)
    return [text for _, text in sorted(problems)]


def _cross_check(apis: list[Any], shown: str) -> list[str]:
    problems: list[str] = []
    seen: set[str] = set()
    for api in apis:
        if api.name in seen:
            problems.append(f"{shown}: {api.name}.name: each API name must be unique, got {api.name!r} twice")
        seen.add(api.name)
    realtime = {api.name for api in apis if isinstance(api, RealtimeAPI)}
    for api in apis:
        if isinstance(api, TrafficSplitter):
            for index, target in enumerate(api.apis):
                if target.name not in realtime:
                    problems.append(
                        f"{shown}: {api.name}.apis.{index}.name: must name a RealtimeAPI in this file, "
                        f"got {target.name!r} (RealtimeAPIs here: {', '.join(sorted(realtime)) or 'none'})"
                    )
    return problems


def _describe(exc: ValidationError, data: list[Any], node: yaml.Node | None, shown: str) -> list[str]:
    found = []
    for error in exc.errors(include_url=False):
        loc = _strip_tag(error["loc"])
        line = _line_of(node, loc)
        where = f" (line {line})" if line else ""
        allowed = _allowed_keys(loc, data) if error["type"] == "extra_forbidden" else []
        found.append((line or 0, f"{shown}: {_key_path(loc, data)}: {_message(error, allowed)}{where}"))
    return [text for _, text in sorted(found, key=lambda item: item[0])]


def describe_errors(exc: ValidationError, model: type[BaseModel], prefix: str) -> list[str]:
    """One `prefix.key.path: message` line per problem of `model` (a handler's config, say), worded as the
    loader words shipyard.yaml's own problems."""
    lines = []
    for error in exc.errors(include_url=False):
        loc = error["loc"]
        allowed = _keys_of(_walk(model, loc[:-1])) if error["type"] == "extra_forbidden" else []
        path = ".".join([prefix, *(str(part) for part in loc)])
        lines.append(f"{path}: {_message(error, allowed)}")
    return lines


def _strip_tag(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    if len(loc) >= 2 and isinstance(loc[0], int) and loc[1] in KINDS:
        return (loc[0], *loc[2:])
    return loc


def _key_path(loc: tuple[int | str, ...], data: list[Any]) -> str:
    if not loc:
        return "(top level)"
    head, *rest = loc
    item = data[head] if isinstance(head, int) and head < len(data) else None
    name = item.get("name") if isinstance(item, dict) else None
    first = name if isinstance(name, str) and name else f"[{head}]"
    return ".".join([first, *(str(part) for part in rest)]) if rest else first


def _message(error: ErrorDetails, allowed: list[str]) -> str:
    kind, ctx, value = error["type"], error.get("ctx", {}), error.get("input")
    bounds = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}
    if kind in bounds:
        limit = next(iter(ctx.values()))
        return f"must be {bounds[kind]} {_show(limit)}, got {_show(value)}"
    if kind == "missing":
        return "required key is missing"
    if kind == "extra_forbidden":
        hint = f"; allowed keys: {', '.join(allowed)}" if allowed else ""
        return f"unknown key{hint}"
    if kind == "union_tag_invalid":
        return f"kind must be one of {', '.join(KINDS)}, got {_show(ctx.get('tag'))}"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}, got {_show(value)}"
    if kind == "enum":
        return f"must be one of {ctx.get('expected')}, got {_show(value)}"
    if kind == "string_pattern_mismatch":
        return f"must be lower-case letters, digits and '-', starting with a letter, got {_show(value)}"
    if kind in ("too_short", "too_long"):
        return f"{error['msg'][0].lower()}{error['msg'][1:]}, got {_show(value)}"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    if kind in _FRACTIONAL:
        return f"must be a whole number, got {_show(value)}"
    if kind == "finite_number":
        return f"must be a finite number, got {_show(value)}"
    if kind.endswith(("_type", "_parsing")):
        expected = kind.rsplit("_", 1)[0]
        expected = _TYPE_WORDS.get(expected, expected)
        return f"must be {_article(expected)} {expected}, got {_show(value)}"
    message = error["msg"][0].lower() + error["msg"][1:]
    return message if "got " in message else f"{message}, got {_show(value)}"


_FRACTIONAL = ("int_from_float",)
_TYPE_WORDS = {
    "dict": "mapping",
    "model": "mapping",
    "model_attributes": "mapping",
    "dataclass": "mapping",
    "typed_dict": "mapping",
    "list": "list",
    "tuple": "list",
    "set": "list",
    "int": "int",
    "float": "number",
    "bool": "boolean",
    "string": "string",
}


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def _show(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return yaml.safe_dump(value).splitlines()[0]
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return repr(value)
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _allowed_keys(loc: tuple[int | str, ...], data: list[Any]) -> list[str]:
    """Walk the models along the key path to the mapping that had the unknown key."""
    head = data[loc[0]] if loc and isinstance(loc[0], int) and loc[0] < len(data) else None
    kind = head.get("kind", "RealtimeAPI") if isinstance(head, dict) else "RealtimeAPI"
    return _keys_of(_walk(_KIND_MODELS.get(str(kind)), loc[1:-1]))


def _walk(model: Any, parts: tuple[int | str, ...]) -> Any:
    for part in parts:
        model = _field_model(model, part)
        if model is None:
            return None
    return model


def _keys_of(model: Any) -> list[str]:
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return []
    return [field.alias or name for name, field in model.model_fields.items()]


def _field_model(model: Any, part: int | str) -> Any:
    if isinstance(model, dict):
        return model.get("value")
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return None
    for name, field in model.model_fields.items():
        if part in (name, field.alias):
            return _unwrap(field.annotation)
    return None


def _unwrap(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        models = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        return _unwrap(models[0]) if len(models) == 1 else None
    if origin is dict:
        return {"value": _unwrap(typing.get_args(annotation)[1])}
    if origin is list:
        return {"value": _unwrap(typing.get_args(annotation)[0])}
    return annotation


def _line_of(node: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """1-based line of the YAML node at `loc`, or of its nearest ancestor that exists."""
    found = None
    for part in loc:
        if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        elif isinstance(node, yaml.MappingNode):
            match = [(k, v) for k, v in node.value if getattr(k, "value", None) == str(part)]
            if not match:
                break
            found = match[0][0].start_mark.line + 1
            node = match[0][1]
            continue
        else:
            break
        found = node.start_mark.line + 1 if node is not None else found
    return found


def display_path(path: Path) -> str:
    """`path` as the user would write it: relative to the working directory when it lies below it."""
    relative = os.path.relpath(path.resolve(), Path.cwd())
    return path.name if relative == path.name else (relative if not relative.startswith("..") else str(path))
