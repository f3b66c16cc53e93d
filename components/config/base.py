"""The base of every config model: frozen, camelCase keys, unknown keys refused, docstrings as descriptions."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class ConfigModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True, extra="forbid", use_attribute_docstrings=True)


class RuleViolation(ValueError):
    """A broken cross-field rule that belongs to one key: the message then names that key and its value.

    Raised from a model validator; `loading` prefixes `key` with the model's own location, so
    `network.jobEgressCidrs = "10.1.0.0/16": ...` rather than the whole `network` section.
    """

    def __init__(self, key: str, value: object, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.value = value
