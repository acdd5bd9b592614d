"""Builders return typed `...Args` objects; tests compare them as the plain data Kubernetes would receive.

`plain` turns an Args tree into dicts keyed by the API's own (camelCase) field names, dropping unset fields, so an
expected value in a test reads like the manifest it describes.
"""

from __future__ import annotations

from typing import Any

from pulumi import _types


def plain(value: Any) -> Any:
    if _types.is_input_type(type(value)):
        return {key: plain(item) for key, item in _types.input_type_to_dict(value).items()}
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value
