"""Serve stage: start an OpenAI-compatible server for a cell's artefact, and stop it cleanly."""
