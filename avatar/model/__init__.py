"""The avatar model: Gaussians bound to the tracked face mesh, the mouth interior, head and torso.

Reads a subject only through :class:`preprocess.subject.Subject`; renders through
:mod:`avatar.render`. ``store`` is the fitted avatar on disk, ``export`` its 3DGS PLY.
"""
