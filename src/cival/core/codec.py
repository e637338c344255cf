"""The one JSON codec of nodes' state, and the one way a node's state is taken and put back.

A node's state (what it knows besides its books: a goal's progress, a farm's step under
way, a strategy's kernel state...) is a :class:`StateModel`: a frozen pydantic model that
refuses unknown fields. :func:`encode` writes one as JSON and :func:`decode` reads it
back, exactly: Decimal as its string, datetime as ISO 8601 (UTC with a ``Z``), date as
ISO, tuples and sets as lists, nested models as objects, floats by their shortest repr
with NaN and infinities kept (``NaN``, ``Infinity``, as Python's json writes them).

Each field of a state model names an attribute of the node it comes from: the attribute
of that name, or, when the node has none, the one with a leading underscore
(``halt_ids`` is ``node._halt_ids``). :func:`capture` reads the attributes into the model
and :func:`apply` writes them back, converting by what the attribute holds (a set
becomes a sorted list and back, a deque a list and back, an object with
``state()``/``restore()`` its own state model). So a new piece of state is one edit: a
field on the model, read and written by the same two functions for every node.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from cival.core.errors import CivalError


class StateError(CivalError):
    """A node's stored state cannot be taken up: a field missing, unknown or of the wrong
    type, or state of another cluster (other agents, other goals)."""


class StateModel(BaseModel):
    """Base of every node's state model: frozen, unknown fields refused, NaN kept in JSON."""

    model_config = ConfigDict(extra="forbid", frozen=True, ser_json_inf_nan="constants", populate_by_name=True)


M = TypeVar("M", bound=BaseModel)


def encode(model: BaseModel, extra: Mapping[str, Any] | None = None) -> str:
    """``model`` as JSON text; ``extra`` members (plain JSON values) are added at the top
    level, first. A value of a type its field does not declare is an error, not a guess."""
    text = model.model_dump_json(by_alias=True, warnings="error")
    if extra:
        head = json.dumps(dict(extra), separators=(",", ":"))[:-1]
        text = head + ("}" if text == "{}" else "," + text[1:])
    return text


def decode(model: type[M], data: str | bytes | Mapping[str, Any], what: str) -> M:
    """A ``model`` from JSON text (or its parsed form). ``what`` names whose state it is,
    for the error: a :class:`StateError` naming the first field missing, unknown or bad."""
    if not isinstance(data, Mapping):
        try:
            data = json.loads(data)
        except ValueError:
            raise StateError(f"{what}: the state is not JSON") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise StateError(f"{what}: {describe(exc)}") from None


def describe(exc: ValidationError) -> str:
    """The first problem of a validation error, naming the field by its path."""
    errors = exc.errors()
    err = errors[0]
    field = ".".join(str(p) for p in err["loc"]) or "(the whole state)"
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    if err["type"] == "missing":
        return f"field {field!r} is missing{more}"
    if err["type"] == "extra_forbidden":
        return f"unknown field {field!r}{more}"
    return f"field {field!r}: {err['msg']} (got {err.get('input')!r:.80}){more}"


# -- taking a node's state and putting it back -----------------------------------------

_ATTRS: dict[tuple[type, str], str] = {}
_PLANS: dict[tuple[type, type], tuple[tuple[str, str | None], ...]] = {}
_STATEFUL: dict[type, bool] = {}
_PLAIN = frozenset({str, int, float, bool, type(None), Decimal, tuple, date, datetime})


def _attr(owner: Any, name: str) -> str:
    """The attribute of ``owner`` that the state field ``name`` stands for."""
    key = (type(owner), name)
    attr = _ATTRS.get(key)
    if attr is None:
        attr = _find(owner, name)
        if attr is None:
            raise StateError(f"{type(owner).__name__} has no attribute {name!r} (nor _{name}) for its state field")
        _ATTRS[key] = attr
    return attr


def _find(owner: Any, name: str) -> str | None:
    fields = vars(owner)
    if name in fields:
        return name
    if "_" + name in fields:
        return "_" + name
    return None


def _plan(owner: Any, model: type[BaseModel]) -> tuple[tuple[str, str | None], ...]:
    """(field, attribute or None) of every field of ``model`` for ``owner``'s type, found once."""
    key = (type(owner), model)
    plan = _PLANS.get(key)
    if plan is None:
        plan = _PLANS[key] = tuple((name, _find(owner, name)) for name in model.model_fields)
    return plan


def _stateful(value: Any) -> bool:
    """Whether ``value`` keeps a state of its own (``state()`` and ``restore()``); by type, once."""
    kind = type(value)
    known = _STATEFUL.get(kind)
    if known is None:
        known = _STATEFUL[kind] = callable(getattr(kind, "state", None)) and callable(getattr(kind, "restore", None))
    return known


def _taken(value: Any) -> Any:
    """A value as a state model holds it: a copy where the node's is mutable."""
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is list:
        return [x.state() for x in value] if value and _stateful(value[0]) else list(value)
    if kind is dict:
        return {k: v if type(v) in _PLAIN else _taken(v) for k, v in value.items()}
    if kind is set or kind is frozenset:
        return sorted(value)
    if kind is deque:
        return list(value)
    if _stateful(value):
        return value.state()
    return value  # immutable: frozen models, enums


def capture(owner: Any, model: type[M], **given: Any) -> M:
    """``owner``'s state as a ``model``: each field from the attribute it names (see the
    module docstring), except those ``given`` (derived values the node computes)."""
    values = {}
    for name, attr in _plan(owner, model):
        if name in given:
            values[name] = given[name]
        elif attr is None:
            raise StateError(f"{type(owner).__name__} has no attribute {name!r} (nor _{name}) for its state field")
        else:
            values[name] = _taken(getattr(owner, attr))
    return built(model, values)


def built(model: type[M], values: dict[str, Any]) -> M:
    """A ``model`` holding ``values`` (every field, by name) as they are, without validation:
    for values the node built itself (:func:`decode` validates what is read back). What
    ``model_construct`` does, without its search for aliases and defaults, which a state
    taken at every commit should not pay for."""
    if model.__pydantic_post_init__ or model.__pydantic_root_model__:
        return model.model_construct(**values)
    m = model.__new__(model)
    _set = object.__setattr__
    _set(m, "__dict__", values)
    _set(m, "__pydantic_fields_set__", set(values))
    _set(m, "__pydantic_extra__", None)
    _set(m, "__pydantic_private__", None)
    return m


def apply(owner: Any, state: BaseModel, what: str, skip: Iterable[str] = ()) -> None:
    """Put ``state`` back into ``owner``'s attributes (the inverse of :func:`capture`),
    except the fields in ``skip`` (which the node restores itself). ``what`` names the
    node, for a :class:`StateError` when the state does not fit it."""
    skipped = set(skip)
    for name in type(state).model_fields:
        if name in skipped:
            continue
        attr = _attr(owner, name)
        setattr(owner, attr, _put(getattr(owner, attr), getattr(state, name), f"{what}, field {name!r}"))


def _put(current: Any, value: Any, where: str) -> Any:
    """What ``current`` (the attribute now) becomes with the stored ``value``."""
    if _stateful(current):
        current.restore(value)
        return current
    if isinstance(current, set):
        return set(value)
    if isinstance(current, deque):
        return deque(value, maxlen=current.maxlen)
    if isinstance(current, list):
        if not current and any(isinstance(v, StateModel) for v in value):
            raise StateError(f"{where}: the state holds {len(value)} entries, this node none")
        if current and _stateful(current[0]):
            if len(current) != len(value):
                raise StateError(f"{where}: the state holds {len(value)} entries, this node {len(current)}")
            for item, item_state in zip(current, value, strict=True):
                item.restore(item_state)
            return current
        return list(value)
    if isinstance(current, dict):
        inner = next(iter(current.values()), None)
        if inner is None and any(isinstance(v, StateModel) for v in value.values()):
            raise StateError(f"{where}: the state is for {sorted(value)}, this node has none")
        if inner is not None and (_stateful(inner) or isinstance(inner, deque)):
            if set(current) != set(value):
                raise StateError(f"{where}: the state is for {sorted(value)}, this node has {sorted(current)}")
            return {k: _put(v, value[k], f"{where}[{k!r}]") for k, v in current.items()}
        return {k: _copied(v) for k, v in value.items()}
    return _copied(value)


def _copied(value: Any) -> Any:
    kind = type(value)
    if kind is list:
        return list(value)
    if kind is dict:
        return dict(value)
    return value


__all__ = ["StateError", "StateModel", "apply", "built", "capture", "decode", "describe", "encode"]
