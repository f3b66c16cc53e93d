"""Read a Pulumi.<stack>.yaml the strict way: plain YAML data, each key once, no expansion bombs.

Pulumi itself rejects duplicate keys in a stack file; PyYAML silently keeps the last one, so a second
`environment: dev` under a `prod` file could win unnoticed. Tags other than YAML's core types are
refused (`!!python/...` and custom `!tags` never belong in config), and aliases are expanded only up
to a fixed number of nodes, so a "billion laughs" file stops with an error instead of a hang.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

MAX_NODES = 100_000  # far above any real stack file
CORE_TAGS = frozenset(f"tag:yaml.org,2002:{name}" for name in ("str", "int", "float", "bool", "null", "map", "seq", "timestamp"))


class StackFileError(ValueError):
    """A stack file that is not plain config; the message names the file, the line and what is wrong."""


class _StrictLoader(yaml.SafeLoader):
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise StackFileError(
                    f"line {key_node.start_mark.line + 1}: duplicate key {key!r} (first at line {seen[key]}): "
                    "YAML would silently keep the last value; remove one"
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)

    def construct_undefined(self, node: yaml.Node) -> Any:
        raise StackFileError(f"line {node.start_mark.line + 1}: tag {node.tag!r} is not allowed in a stack file (plain YAML values only)")


_StrictLoader.add_constructor(None, _StrictLoader.construct_undefined)  # type: ignore[arg-type]  # None = any other tag (PyYAML API)


def _check_tags_and_size(node: yaml.Node) -> None:
    """Refuse non-core tags anywhere, and count nodes with aliases expanded (memoised: linear time)."""
    sizes: dict[int, int] = {}

    def size(n: yaml.Node) -> int:
        if id(n) in sizes:
            return sizes[id(n)]
        if n.tag not in CORE_TAGS:
            raise StackFileError(f"line {n.start_mark.line + 1}: tag {n.tag!r} is not allowed in a stack file (plain YAML values only)")
        sizes[id(n)] = 0  # a node that contains itself (recursive alias) counts once, then is refused below
        total = 1
        if isinstance(n, yaml.SequenceNode):
            total += sum(size(child) for child in n.value)
        elif isinstance(n, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in n.value)
        sizes[id(n)] = total
        if total > MAX_NODES:
            raise StackFileError(
                f"line {n.start_mark.line + 1}: more than {MAX_NODES} values once aliases are expanded (an alias bomb?); "
                "write the config out without anchors"
            )
        return total

    size(node)


def _has_cycle(node: yaml.Node, path: frozenset[int] = frozenset()) -> bool:
    if id(node) in path:
        return True
    children: list[yaml.Node] = []
    if isinstance(node, yaml.SequenceNode):
        children = list(node.value)
    elif isinstance(node, yaml.MappingNode):
        children = [n for pair in node.value for n in pair]
    return any(_has_cycle(child, path | {id(node)}) for child in children)


def read_stack_file(path: Path) -> dict[str, Any]:
    """The whole file as data; raises StackFileError (never a parser traceback) for anything but plain config."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise StackFileError(f"{path}: cannot read it ({exc.strerror})") from None
    try:
        loader = _StrictLoader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return {}
            _check_tags_and_size(node)
            if _has_cycle(node):
                raise StackFileError(f"line {node.start_mark.line + 1}: an alias refers to a value that contains it")
            data = loader.construct_document(node)
        finally:
            loader.dispose()
    except StackFileError as exc:
        raise StackFileError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise StackFileError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise StackFileError(f"{path}: must be a mapping with a 'config:' key, not {type(data).__name__}")
    return data
