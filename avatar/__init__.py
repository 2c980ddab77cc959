"""talking-avatar: person-specific 3D Gaussian talking-head avatars on CPU."""

__version__ = "0.1.0"
