"""Talking videos (issue #12): the fitted avatar driven by motion, rendered, pasted back and encoded.

``frames.AvatarFrames`` is the one motion + rendering path that ``avatar render``
(``run.render_talk``) and the viewer share; ``tts`` speaks text locally,
``cameras`` moves the camera, ``paste_back`` puts the crop back into the source
frames. See docs/render.md.
"""
