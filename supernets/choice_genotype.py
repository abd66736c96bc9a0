"""The generic genotype: for every choice label, the chosen candidate or the chosen inputs.

JSON form: ``{"choices": {"cell/op": "conv_3x3", "cell/input": [0, 2]}}``.
Text form (one line): ``cell/op=conv_3x3 cell/input=0,2``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from supernets.choices import ChoiceValue
from supernets.errors import GenotypeError

TEXT_FORM = "label=candidate label=input,input ..."


@dataclass(frozen=True)
class ChoiceGenotype:
    """A derived architecture of any space: ``choices`` maps each label to its choice.

    An operation choice holds the chosen candidate's name, an input choice a tuple of input
    indices. Construction checks the types; :meth:`Supernet.check_genotype` checks the values
    against a space.
    """

    choices: tuple[tuple[str, ChoiceValue], ...]

    def __post_init__(self) -> None:
        items = self.choices.items() if isinstance(self.choices, Mapping) else self.choices
        checked = tuple((_label(label), _value(label, value)) for label, value in items)
        if len({label for label, _ in checked}) != len(checked):
            raise GenotypeError("a genotype lists a choice label twice; give each label once")
        object.__setattr__(self, "choices", checked)

    def as_dict(self) -> dict[str, ChoiceValue]:
        """``label -> candidate name`` or ``label -> tuple of input indices``."""
        return dict(self.choices)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: ``{"choices": {label: name or [indices]}}``."""
        return {"choices": {label: value if isinstance(value, str) else list(value)
                            for label, value in self.choices}}

    @classmethod
    def from_dict(cls, data: Any) -> ChoiceGenotype:
        """Build from :meth:`to_dict` output; errors name the bad field."""
        if not isinstance(data, Mapping) or list(data) != ["choices"] or \
                not isinstance(data["choices"], Mapping):
            raise GenotypeError("a genotype must be an object {\"choices\": {label: candidate or "
                                "[input indices]}}")
        return cls(tuple(data["choices"].items()))

    def to_text(self) -> str:
        """The one-line form, e.g. ``cell/op=conv_3x3 cell/input=0,2``."""
        return " ".join(f"{label}={value if isinstance(value, str) else ','.join(map(str, value))}"
                        for label, value in self.choices)

    @classmethod
    def from_text(cls, text: str) -> ChoiceGenotype:
        """Parse :meth:`to_text`'s form; inputs are comma-separated integers."""
        if not isinstance(text, str) or not text.strip():
            raise GenotypeError(f"genotype text must be '{TEXT_FORM}', got {text!r}")
        pairs = []
        for part in text.split():
            label, sep, value = part.partition("=")
            if not sep or not label or not value:
                raise GenotypeError(f"genotype text entry {part!r} must be label=value; "
                                    f"write the genotype as '{TEXT_FORM}'")
            parts = value.split(",")
            if all(p.isdigit() for p in parts):
                pairs.append((label, tuple(int(p) for p in parts)))
            else:
                pairs.append((label, value))
        return cls(tuple(pairs))

    def __str__(self) -> str:
        return self.to_text()


def _label(label: Any) -> str:
    if not isinstance(label, str) or not label or any(c.isspace() for c in label) or "=" in label:
        raise GenotypeError(f"genotype choice label must be a string without spaces or '=', "
                            f"got {label!r}")
    return label


def _value(label: str, value: Any) -> ChoiceValue:
    if isinstance(value, str) and value and not any(c.isspace() for c in value) and "," not in value:
        return value
    if isinstance(value, (list, tuple)) and value and \
            all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in value):
        return tuple(value)
    raise GenotypeError(f"genotype choice '{label}' must be a candidate name or a list of input "
                        f"indices, got {value!r}")
