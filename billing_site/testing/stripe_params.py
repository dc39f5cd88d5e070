"""Check a request's parameters against the typed parameter classes that ship inside the Stripe SDK.

The SDK generates one TypedDict per endpoint (`stripe/params/billing/_meter_event_create_params.py` has
`MeterEventCreateParams`) from Stripe's OpenAPI spec. A fake server that checks what it receives against
them catches a misspelt or missing parameter the way Stripe would, without hand-written expectations.

Requests arrive form-encoded (`payload[value]=25`, `expand[0]=x`), so every leaf is a string here: an
`int` must look like one, a `Literal` must be one of its values, a `bool` is `true` or `false`.
"""

from __future__ import annotations

import functools
import re
import sys
import types
import typing
from typing import Any, ForwardRef, Literal, NotRequired, Required, Union, get_args, get_origin
from urllib.parse import parse_qsl

import typing_extensions
from stripe._request_options import RequestOptions

_OPTION_KEYS = frozenset(RequestOptions.__annotations__)
_INT = re.compile(r"-?\d+")
_KEY = re.compile(r"([^\[\]]+)|\[([^\[\]]*)\]")


def decode_form(text: str) -> dict[str, Any]:
    """Stripe's form encoding back into nested dicts and lists (`a[b][0]=v` -> {"a": {"b": ["v"]}})."""
    root: dict[str, Any] = {}
    for raw_key, value in parse_qsl(text, keep_blank_values=True):
        parts = [name or index for name, index in _KEY.findall(raw_key)]
        node: dict[str, Any] = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"conflicting keys at {raw_key!r}")
        node[parts[-1]] = value
    return _listify(root)


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    converted = {key: _listify(value) for key, value in node.items()}
    if converted and all(key.isdigit() for key in converted):
        return [converted[key] for key in sorted(converted, key=int)]
    return converted


def _resolve(annotation: Any, namespace: dict[str, Any]) -> Any:
    """Evaluate string and ForwardRef annotations (nested ones included) in the module's namespace."""
    if isinstance(annotation, ForwardRef):
        annotation = annotation.__forward_arg__
    if isinstance(annotation, str):
        annotation = eval(annotation, namespace)  # noqa: S307 - the SDK's own generated annotations
    origin = get_origin(annotation)
    if origin is None or origin is Literal:
        return annotation
    args = tuple(_resolve(arg, namespace) for arg in get_args(annotation))
    if origin in (Union, types.UnionType):
        return Union[args]  # noqa: UP007
    if origin in (NotRequired, Required):
        return origin[args[0]]
    try:
        return origin[args] if len(args) > 1 else origin[args[0]]
    except TypeError:
        return typing.__dict__.get(origin.__name__.capitalize(), origin)[args]


@functools.cache
def _fields(cls: type) -> dict[str, tuple[Any, bool]]:
    """{name: (type, required)} of a TypedDict, without the SDK's request options (api_key, ...)."""
    namespace = dict(vars(sys.modules[cls.__module__]))
    out = {}
    for name, annotation in cls.__annotations__.items():
        if name in _OPTION_KEYS:
            continue
        resolved = _resolve(annotation, namespace)
        out[name] = (_strip(resolved), name in cls.__required_keys__)
    return out


def _strip(annotation: Any) -> Any:
    if get_origin(annotation) in (NotRequired, Required):
        return get_args(annotation)[0]
    return annotation


def _is_typeddict(annotation: Any) -> bool:
    return isinstance(annotation, type) and typing_extensions.is_typeddict(annotation)


def check_params(cls: type, params: Any, path: str = "") -> list[str]:
    """Every way `params` breaks the TypedDict `cls` (an empty list when it conforms)."""
    if not isinstance(params, dict):
        return [f"{path or 'params'}: expected an object, got {params!r}"]
    problems = []
    fields = _fields(cls)
    for name, (_, required) in fields.items():
        if required and name not in params:
            problems.append(f"{path}{name}: required by {cls.__name__} but missing")
    for name, value in params.items():
        if name not in fields:
            problems.append(f"{path}{name}: not a parameter of {cls.__name__}")
            continue
        problems.extend(_check(fields[name][0], value, f"{path}{name}"))
    return problems


def _check(annotation: Any, value: Any, path: str) -> list[str]:
    origin = get_origin(annotation)
    if annotation is Any:
        return []
    if origin in (Union, types.UnionType):
        options = [_check(arg, value, path) for arg in get_args(annotation)]
        if any(not problems for problems in options):
            return []
        return [f"{path}: {value!r} matches none of {annotation}"]
    if annotation is type(None):
        return [] if value == "" else [f"{path}: expected empty (null), got {value!r}"]
    if origin is Literal:
        allowed = [str(arg) for arg in get_args(annotation)]
        return [] if value in allowed else [f"{path}: {value!r} is not one of {allowed}"]
    if _is_typeddict(annotation):
        return check_params(annotation, value, f"{path}.")
    if origin in (list, typing.List):  # noqa: UP006
        if not isinstance(value, list):
            return [f"{path}: expected a list, got {value!r}"]
        (item,) = get_args(annotation)
        return [problem for index, v in enumerate(value) for problem in _check(item, v, f"{path}[{index}]")]
    if origin in (dict, typing.Dict) or getattr(origin, "__name__", "") == "UntypedStripeObject":  # noqa: UP006
        if not isinstance(value, dict):
            return [f"{path}: expected an object, got {value!r}"]
        args = get_args(annotation)
        item = args[-1] if args else Any
        return [problem for key, v in value.items() for problem in _check(item, v, f"{path}.{key}")]
    if getattr(annotation, "__name__", "") == "UntypedStripeObject":
        return [] if isinstance(value, dict) else [f"{path}: expected an object, got {value!r}"]
    if annotation is str:
        return [] if isinstance(value, str) else [f"{path}: expected a string, got {value!r}"]
    if annotation is bool:
        return [] if value in ("true", "false") else [f"{path}: expected true or false, got {value!r}"]
    if annotation is int:
        return (
            [] if isinstance(value, str) and _INT.fullmatch(value) else [f"{path}: expected an integer, got {value!r}"]
        )
    if annotation is float:
        try:
            float(value)
        except (TypeError, ValueError):
            return [f"{path}: expected a number, got {value!r}"]
        return []
    return []
