"""The base layer: what every stage shares and nothing above it may change.

Errors, progress bars, the camera convention, config loading, atomic file
writing, ffmpeg and video probing, rotations, and where the shared test data
lives. Modules here import no other part of the project (checked by the
import-linter contract in ``pyproject.toml``) and no heavy library at import
time, so loading a config stays fast.
"""
