"""MediaPipe FaceMesh landmark indices with a meaning, named once for every stage.

Indices are into the 478 points of ``refine_landmarks=True`` (468 mesh
vertices, then 5 per iris). "Left" and "right" are the subject's own: the
subject's left is on the image right when the head faces the camera.
"""

from __future__ import annotations

import numpy as np

NUM_MESH_VERTICES = 468
"""Vertices of the face mesh proper; the triangles use only these."""
NUM_LANDMARKS = 478
"""Landmarks with ``refine_landmarks=True``: the mesh plus 5 per iris."""
CHIN = 152
"""Lowest point of the face oval (tip of the chin)."""
JAW_CORNERS = (172, 397)
"""Face-oval vertices at the angles of the jaw: (subject's right, subject's left)."""
NOSE_TIP = 1
"""Most forward point of the nose."""
RIGHT_IRIS_CENTER = 468
"""Centre of the subject's right iris (image left)."""
LEFT_IRIS_CENTER = 473
"""Centre of the subject's left iris (image right)."""
FOREHEAD_TOP, NOSE_BRIDGE = 10, 168
"""Top of the face oval on the forehead; the deepest point of the nose bridge."""

# Left/right symmetric landmark pairs (subject's right side first; it is on the
# image left when the head is frontal): face-oval pairs and the eye corners.
SYMMETRIC_PAIRS = np.array([
    (109, 338), (67, 297), (103, 332), (54, 284), (21, 251), (162, 389), (127, 356),
    (234, 454), (93, 323), (132, 361), (58, 288), (172, 397), (136, 365), (150, 379),
    (149, 378), (176, 400), (148, 377), (33, 263), (133, 362)])
RIGHT_EYE_OUTER, LEFT_EYE_OUTER = 33, 263

# Eye openness: upper/lower lid pairs and the corners, per eye (subject's left
# eye first: MediaPipe's FACEMESH_LEFT_EYE, on the image right).
EYE_LIDS = (((385, 380), (386, 374), (387, 373)), ((160, 144), (159, 145), (158, 153)))
EYE_CORNERS = ((362, 263), (133, 33))
# Mouth openness: inner-lip upper/lower pairs and the outer mouth corners.
INNER_LIPS = ((82, 87), (13, 14), (312, 317))
MOUTH_CORNERS = (61, 291)

# Landmarks that move only with the skull: upper forehead, nose bridge and upper
# nose sides, temples and outer orbit rims, upper cheekbones towards the ears.
# Not mouth, jaw, lids or brows (they follow expression). Chosen by anatomy and
# checked on cnn2: after Procrustes each moves less than 59 % of all landmarks.
RIGID_LANDMARKS = np.array(sorted({
    10, 151, 9, 108, 337, 109, 338, 67, 297, 69, 299, 104, 333, 68, 298, 71, 301,  # forehead
    168, 6, 197, 195, 5, 122, 351, 193, 417, 188, 412, 114, 343, 47, 277,  # nose bridge, upper sides
    139, 368, 34, 264, 162, 389, 21, 251, 54, 284, 103, 332, 127, 356, 227, 447,  # temples, orbit rims
    116, 345, 117, 346, 123, 352, 111, 340, 143, 372, 234, 454,  # cheekbones
}))
