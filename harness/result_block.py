"""Block: the base of every part of a CellResult (harness/result.py, harness/result_engine.py). Its own module so
both can build on it without importing each other."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Block(BaseModel):
    """A part of a result: the named fields are the contract; anything else an engine reported is kept."""

    model_config = ConfigDict(extra="allow")
