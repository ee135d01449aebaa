"""Compression stage: turns a model checkpoint into the artefact a cell serves (plugins per method)."""
