"""Loading YAML files into pydantic models with one-line errors: file, field, problem."""
from __future__ import annotations

import difflib
import typing
from pathlib import Path
from typing import TypeVar

import pydantic
import yaml

M = TypeVar("M", bound=pydantic.BaseModel)

# Hostile or broken files must fail fast (within about a second of CPU) with one line:
# - the pure-Python YAML parser reads the densest text (`[1,1,1,...`) at about 0.1 MB/s, so YAML
#   files are capped at MAX_YAML_BYTES (large node inputs belong in .npz files);
# - its scanner spends time proportional to the flow nesting depth ([[[...]]]) on every token, and
#   its composer recurses once per level, so nesting is capped too;
# - aliases may not expand a document by more than MAX_ALIAS_EXPANSION nodes: a "billion laughs"
#   file is a few hundred bytes that expand to 10^9 nodes in pydantic or repr(), and a cyclic alias
#   is refused outright.
# The C loader is not used: it overflows the C stack on deeply nested documents.
MAX_YAML_BYTES = 128 * 1024
MAX_YAML_DEPTH = 32
MAX_FLOW_DEPTH = 8
MAX_ALIAS_EXPANSION = 100_000
# An error names its field and problem in full, unless a hostile file makes them absurdly long.
_MAX_PART = {"path": 400, "field": 200, "problem": 1000}


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f"... ({len(text) - limit} more characters)"


class ConfigError(ValueError):
    """A config or scenario file is malformed; str() is one line naming the file, field and problem."""

    def __init__(self, path: Path | str, field: str, problem: str):
        self.path, self.field, self.problem = str(path), field, problem
        line = f"{_clip(str(path), _MAX_PART['path'])}: {_clip(field, _MAX_PART['field'])}: " \
               f"{_clip(problem, _MAX_PART['problem'])}"
        super().__init__(" ".join(line.splitlines()))  # one line, whatever the YAML held


def _location(loc: tuple) -> str:
    parts = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "(top level)"


def from_validation_error(path: Path | str, exc: pydantic.ValidationError,
                          model: type[pydantic.BaseModel] | None = None) -> ConfigError:
    """The first problem as one line. An unknown field comes first: a misspelled field is also
    reported missing under its right name, and naming the misspelling (with the closest known
    field of `model` at that place) is what tells the user what to fix."""
    errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")   # stable: order kept otherwise
    err = errors[0]
    msg = err["msg"].replace("\n", " ")
    if err["type"] == "missing":
        msg = "required field is missing"
    elif err["type"] == "extra_forbidden":
        name = str(err["loc"][-1]) if err["loc"] else ""
        msg = f"unknown field {_clip(name, 60)!r}"
        close = difflib.get_close_matches(name, sorted(known_fields(model, tuple(err["loc"][:-1]))), n=1) \
            if model is not None else []
        if close:
            msg += f" (did you mean {close[0]!r}?)"
            # the right name missing is the same mistake, not one more
            meant = tuple(err["loc"][:-1]) + (close[0],)
            errors = [e for e in errors if not (e["type"] == "missing" and tuple(e["loc"]) == meant)]
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return ConfigError(path, _location(tuple(err["loc"])), msg + more)


def known_fields(model: type[pydantic.BaseModel], loc: tuple) -> set[str]:
    """The field names the models reached by `loc` from `model` accept (every member of a union;
    a union's tag in `loc`, like a scenario's kind, matches no field and is stepped over)."""
    current = _expand(model)
    for item in loc:
        tagged = [tp for tp in current if _tagged(tp, item)]
        if len(current) > 1 and tagged:   # pydantic names a tagged union's member by its tag
            current = tagged
            continue
        step: list[object] = []
        for tp in current:
            if isinstance(tp, type) and issubclass(tp, pydantic.BaseModel):
                if isinstance(item, str) and item in tp.model_fields:
                    step += _expand(tp.model_fields[item].annotation)
            elif typing.get_origin(tp) in (list, tuple, set, frozenset, dict):
                args = typing.get_args(tp)
                step += _expand(args[-1]) if args else []
        current = step or [tp for tp in current if isinstance(tp, type) and issubclass(tp, pydantic.BaseModel)]
    names: set[str] = set()
    for tp in current:
        if isinstance(tp, type) and issubclass(tp, pydantic.BaseModel):
            # excluded fields are the removed ones (config.REMOVED_POLICY_FIELDS): never suggest them
            names |= {info.alias or name for name, info in tp.model_fields.items() if not info.exclude}
    return names


def _tagged(tp: object, tag: object) -> bool:
    """`tp` is a model with a Literal field that admits `tag` (the member of a tagged union it names)."""
    if not (isinstance(tp, type) and issubclass(tp, pydantic.BaseModel)):
        return False
    return any(typing.get_origin(f.annotation) is typing.Literal and tag in typing.get_args(f.annotation)
               for f in tp.model_fields.values())


def _expand(tp: object) -> list[object]:
    """Annotated[X, ...] -> [X]; Union[X, Y] / X | Y / Optional[X] -> [X, Y]; anything else -> [tp]."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _expand(typing.get_args(tp)[0])
    if origin is typing.Union or type(tp).__name__ == "UnionType":
        return [x for arg in typing.get_args(tp) for x in _expand(arg)]
    return [tp]


class _GuardedLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses alias bombs and cyclic aliases, and reports scalars that the
    safe constructors cannot convert (2024-13-45, a 5000-digit int, !!bool maybe) as YAML errors."""

    _depth = 0

    def fetch_flow_collection_start(self, TokenClass):  # type: ignore[no-untyped-def]
        if self.flow_level >= MAX_FLOW_DEPTH:
            raise yaml.scanner.ScannerError(None, None, f"[ ] or {{ }} nested more than {MAX_FLOW_DEPTH} levels deep",
                                            self.get_mark())
        super().fetch_flow_collection_start(TokenClass)

    def compose_node(self, parent, index):  # type: ignore[no-untyped-def]
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise yaml.composer.ComposerError(None, None, f"nested more than {MAX_YAML_DEPTH} levels deep",
                                                  self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_document(self):  # type: ignore[no-untyped-def]
        node = super().compose_document()
        _check_expansion(node)
        return node

    def construct_object(self, node, deep=False):  # type: ignore[no-untyped-def]
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError, IndexError, OverflowError) as exc:
            shown = _clip(repr(node.value), 60) if isinstance(node, yaml.ScalarNode) else node.id
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read {shown} as {node.tag.rsplit(':', 1)[-1]}: {exc}", node.start_mark) from None


def _check_expansion(root: yaml.Node | None) -> None:
    """Count the nodes of the document as if every alias were copied out; refuse a cycle, or an
    expansion by more than MAX_ALIAS_EXPANSION nodes. Iterative, linear in the distinct nodes."""
    if root is None:
        return
    cap = 1 << 62
    sizes: dict[int, int] = {}
    started: set[int] = set()
    distinct = 0
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        key = id(node)
        if finished:
            sizes[key] = min(cap, 1 + sum(sizes[id(c)] for c in children))
            continue
        if key in sizes:
            continue
        if key in started:
            raise yaml.composer.ComposerError(None, None, "an alias refers to a node that contains it",
                                              node.start_mark)
        started.add(key)
        distinct += 1
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in sizes)
    if sizes[id(root)] - distinct > MAX_ALIAS_EXPANSION:
        raise yaml.composer.ComposerError(
            None, None, f"aliases expand the document by more than {MAX_ALIAS_EXPANSION} nodes", root.start_mark)


def _too_large(path: Path | str, hint: str) -> ConfigError:
    return ConfigError(path, "(file)", f"larger than {MAX_YAML_BYTES // 1024} KiB, the limit for YAML files{hint}")


# Only a node input file can move to .npz; a scenario or config file that large has another problem.
NPZ_HINT = " (large node inputs belong in .npz files)"


def parse_yaml(text: str, path: Path | str, too_large_hint: str = "") -> object:
    """yaml.safe_load with the guards above; any problem is a one-line ConfigError."""
    if len(text) > MAX_YAML_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_YAML_BYTES:
        raise _too_large(path, too_large_hint)
    try:
        return yaml.load(text, Loader=_GuardedLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        problem = getattr(exc, "problem", None) or (str(exc).splitlines() or [type(exc).__name__])[0]
        raise ConfigError(path, where, f"invalid YAML: {problem}") from None
    except RecursionError:
        raise ConfigError(path, "(file)", "invalid YAML: nested too deeply") from None
    except (ValueError, TypeError, KeyError, AttributeError, IndexError, OverflowError) as exc:
        raise ConfigError(path, "(file)", f"invalid YAML: {type(exc).__name__}: {exc}") from None


def read_yaml(path: Path, too_large_hint: str = "") -> object:
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_YAML_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(path, "(file)", "file not found") from None
    except OSError as exc:
        raise ConfigError(path, "(file)", f"cannot read: {exc}") from None
    if len(raw) > MAX_YAML_BYTES:
        raise _too_large(path, too_large_hint)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(path, "(file)", f"cannot read: {exc}") from None
    return parse_yaml(text, path, too_large_hint)


def load_model(path: Path | str, model: type[M]) -> M:
    path = Path(path)
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(path, "(top level)", f"expected a mapping of fields, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        raise from_validation_error(path, exc, model) from None
