"""The base layer: what every stage shares and nothing above it may change.

Errors, progress bars, the camera convention, config loading, atomic file
writing, ffmpeg and video probing, rotations, and where the shared test data
lives. Modules here import no other part of the project (checked by the
import-linter contract in ``pyproject.toml``). What a config load needs
(``config``, ``files``, ``errors``) imports only PyYAML at module level; NumPy,
OpenCV, PyAV and imageio-ffmpeg are imported inside the functions that use
them, and ``rotations`` (PyTorch) and ``camera`` (NumPy) are imported only by
the stages that compute with them.
"""
