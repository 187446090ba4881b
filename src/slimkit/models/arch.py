"""The architecture record: how to rebuild a model, stored with everything slimkit saves.

A saved model is weights plus this record plus a layer manifest (shapes), never a pickled
module. The record names the source the network was first built from, the factory kwargs, and
the edits since that the shapes alone cannot say (which layers a student kept, which residual
blocks a shallower student dropped, the size a lower-resolution student resizes its images
to).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import Field, ValidationError

from slimkit.config import Config

# An image side a model may resize to. A file handed over may hold any number here, and a huge
# one would make the first layer allocate without bound; students only ever shrink images.
Side = Annotated[int, Field(ge=1, le=4096)]


class KeptLayers(Config):
    """A student that kept some layers of a stack: the stack's qualified name and the indices
    of the teacher's layers it kept, in order."""

    path: str
    keep: tuple[int, ...] = Field(min_length=1)


class Arch(Config):
    """How to rebuild a model: ``source`` and ``kwargs`` build the network as it was first
    made; ``layers`` replays a layer-dropping student's cut onto it, ``dropped`` names the
    residual blocks a shallower student replaced by the identity, ``resolution`` is the
    (height, width) a lower-resolution student resizes its images to
    (:mod:`slimkit.models.resolution`).

    >>> Arch(source="resnet-mini", kwargs={"num_classes": 10}).to_dict()
    {'source': 'resnet-mini', 'kwargs': {'num_classes': 10}}
    """

    source: str = Field(min_length=1)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    layers: KeptLayers | None = None
    dropped: tuple[str, ...] | None = None
    resolution: tuple[Side, Side] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able, without the edits a model does not have (the form saved files hold)."""
        return self.model_dump(mode="json", exclude_none=True)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def parse(cls, value: Any) -> Arch | None:
        """The record in ``value`` (as read from a file), or None if it is not one."""
        try:
            return cls.model_validate(value)
        except ValidationError:
            return None
