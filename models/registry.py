"""One registry of models by name, in timm's ``register_model`` shape.

Two kinds of entry:

- ``student``: a function of no arguments returning a ``StudentSpec`` (the registered *preset*; the spec is what a
  checkpoint stores, so ``create_model`` can rebuild it with overrides such as ``input_size`` or ``width``);
- ``pretrained``: a function ``(num_classes, weights=None) -> nn.Module`` whose model carries a ``.preprocess``
  (``efficientnet_lite0`` and every torchvision classifier are registered this way).

Adding a family outside torchvision is one decorated function in one file::

    from distill.models import register_model

    @register_model(kind="pretrained")
    def my_resnet(num_classes: int, weights: str | None = None) -> nn.Module: ...

Every lookup of an unknown name raises the same ``UnknownModelError``, listing what is registered.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, get_args

Kind = Literal["student", "pretrained"]
KINDS: tuple[Kind, ...] = get_args(Kind)


@dataclass(frozen=True)
class Entry:
    name: str
    kind: Kind
    builder: Callable
    family: str = ""  # e.g. "torchvision": named together in error messages instead of one by one


_REGISTRY: dict[str, Entry] = {}


class UnknownModelError(ValueError):
    """A model name no builder is registered under."""


def register_model(fn: Callable | None = None, *, kind: Kind = "pretrained", name: str | None = None,
                   family: str = "") -> Callable:
    """Register ``fn`` under ``name`` (default: its own name); usable as ``@register_model`` or
    ``@register_model(kind="student")``. A name registers once."""
    if kind not in KINDS:
        raise ValueError(f"register_model: kind={kind!r}; choose one of {KINDS}")

    def add(builder: Callable) -> Callable:
        key = name or builder.__name__
        if key in _REGISTRY:
            raise ValueError(f"register_model: {key!r} is already registered ({_REGISTRY[key].kind})")
        _REGISTRY[key] = Entry(key, kind, builder, family)
        return builder

    return add(fn) if fn is not None else add


def list_models(kind: Kind | None = None) -> list[str]:
    """Registered names (of one ``kind``), in registration order."""
    return [e.name for e in _REGISTRY.values() if kind is None or e.kind == kind]


def is_registered(name: object, kind: Kind | None = None) -> bool:
    entry = _REGISTRY.get(name) if isinstance(name, str) else None
    return entry is not None and (kind is None or entry.kind == kind)


def describe_registered(kind: Kind | None = None) -> str:
    """The registered names as one line: each name, except large families (torchvision) by count and example."""
    parts, families = [], {}
    for entry in _REGISTRY.values():
        if kind is not None and entry.kind != kind:
            continue
        if entry.family:
            families.setdefault(entry.family, []).append(entry.name)
        else:
            parts.append(entry.name)
    for family, names in families.items():
        examples = [n for n in ("resnet18", "mobilenet_v3_small", "efficientnet_b0") if n in names] or names[:3]
        parts.append(f"{len(names)} {family} classifiers (e.g. {', '.join(examples)})")
    return ", ".join(parts) or "nothing"


def lookup(name: object, kind: Kind | None = None) -> Entry:
    """The entry registered under ``name`` (of ``kind``), or ``UnknownModelError`` listing the registered names."""
    if not is_registered(name, kind):
        what = f"{kind} model" if kind else "model"
        spec_hint = "" if kind == "pretrained" else "a student may also be a spec dict; "
        raise UnknownModelError(f"unknown {what} {name!r}; registered: {describe_registered(kind)} "
                                f"({spec_hint}add a model with distill.models.register_model)")
    return _REGISTRY[name]  # type: ignore[index]
