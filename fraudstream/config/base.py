"""Shared base for every configuration section: frozen, strict about unknown keys."""

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A frozen config section; an unknown key is an error, so a typo names itself."""

    model_config = ConfigDict(frozen=True, extra="forbid")
