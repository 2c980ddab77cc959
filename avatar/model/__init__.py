"""The avatar model: Gaussians bound to the tracked face mesh, and what deforms them.

Reads a subject only through :class:`preprocess.subject.Subject`; renders through
:mod:`avatar.render`. Built up by issue #10 (fit); today it holds the binding of
Gaussians to mesh triangles that the fit stands on.
"""
