"""Triangles and named regions of the MediaPipe face mesh (468 + 10 iris landmarks).

MediaPipe ships the tessellation of its face mesh only as a set of edges
(``FACEMESH_TESSELATION``), not as triangles. This module rebuilds a clean,
consistently oriented triangle list from it, and turns the region edge sets
(lips, eyes, face oval ...) into ordered polygon loops.

Winding convention (used by every consumer of :func:`face_triangles`):
  a triangle ``(a, b, c)`` is a *front face* when its normal
  ``(v_b - v_a) x (v_c - v_a)`` points toward the camera, i.e. has negative z in
  the camera frame of :mod:`avatar.core.camera` (x right, y down, z away) and in
  MediaPipe's own landmark coordinates, which share those axes. Seen on screen,
  front faces run counter-clockwise. For a frontal face every triangle is a
  front face. All loops returned here run in the same on-screen sense
  (counter-clockwise for a frontal face) and start at their lowest vertex index.

"Left" and "right" follow MediaPipe: the *subject's* left, which is on the
image's right for a person facing the camera.

The surface is a disk with three holes: the mouth (``lips_inner``) and the two
eyes stay open, as they must for binding Gaussians to a moving mouth and eyelids.
There are no other holes in MediaPipe's tessellation, so nothing is filled;
:func:`loop_cap_triangles` closes a loop explicitly when a consumer needs it.
"""

from __future__ import annotations

import collections
import functools
from typing import Iterable

import numpy as np
from mediapipe.python.solutions import face_mesh_connections as _fmc

from preprocess.landmark_ids import (  # noqa: F401  (re-exported: topo.CHIN etc.)
    CHIN, JAW_CORNERS, LEFT_IRIS_CENTER, NOSE_TIP, NUM_LANDMARKS, NUM_MESH_VERTICES, RIGHT_IRIS_CENTER)

Edge = tuple[int, int]


def _frozen(a: np.ndarray) -> np.ndarray:
    """Mark a cached array read-only so no caller can change it for everyone."""
    a.setflags(write=False)
    return a


# ---------------------------------------------------------------------------
# Triangles


def _triangle_cliques(edges: Iterable[Edge]) -> list[tuple[int, int, int]]:
    """All 3-cliques of an undirected graph, as sorted vertex triples."""
    neighbours: dict[int, set[int]] = collections.defaultdict(set)
    for a, b in edges:
        neighbours[a].add(b)
        neighbours[b].add(a)
    return sorted({tuple(sorted((a, b, c)))
                   for a in neighbours for b in neighbours[a] if b > a
                   for c in neighbours[a] & neighbours[b] if c > b})


def _undirected(a: int, b: int) -> Edge:
    return (a, b) if a < b else (b, a)


def _tri_edges(t: tuple[int, ...]) -> list[Edge]:
    return [_undirected(t[i], t[(i + 1) % 3]) for i in range(3)]


def _drop_spurious_cliques(tris: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """Remove 3-cliques that are not faces, until every edge borders <= 2 triangles.

    A clique that is not a face is a triangle of edges around a fan of real faces
    (e.g. 49-64-129 around vertex 102 on the nostril): all three of its edges then
    border three cliques. Dropping the clique with the most over-shared edges
    first removes exactly those, whatever their count.
    """
    tris = list(tris)
    while True:
        count = collections.Counter(e for t in tris for e in _tri_edges(t))
        worst = max(tris, key=lambda t: sum(count[e] > 2 for e in _tri_edges(t)))
        if sum(count[e] > 2 for e in _tri_edges(worst)) == 0:
            return tris
        tris.remove(worst)


def _orient_consistently(tris: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """Flip triangles so that neighbours traverse each shared edge in opposite directions.

    Breadth-first over edge-adjacent triangles from the first one of each
    connected component; the global sign is fixed afterwards.
    """
    by_edge = _triangles_by_edge(tris)
    oriented: dict[int, tuple[int, int, int]] = {}
    for seed in range(len(tris)):
        if seed in oriented:
            continue
        oriented[seed] = tris[seed]
        queue = collections.deque([seed])
        while queue:
            t = oriented[queue.popleft()]
            for k in range(3):
                a, b = t[k], t[(k + 1) % 3]
                for j in by_edge[_undirected(a, b)]:
                    if j in oriented:
                        continue
                    u = tris[j]
                    # The neighbour must run b -> a along the shared edge.
                    runs_ab = any(u[m] == a and u[(m + 1) % 3] == b for m in range(3))
                    oriented[j] = (u[0], u[2], u[1]) if runs_ab else u
                    queue.append(j)
    return [oriented[i] for i in range(len(tris))]


def _half_edges(tris: Iterable[tuple[int, ...]]) -> set[Edge]:
    return {(t[k], t[(k + 1) % 3]) for t in tris for k in range(3)}


@functools.lru_cache(maxsize=None)
def face_triangles() -> np.ndarray:
    """(T, 3) int32 vertex indices into the 468 mesh landmarks, front faces (see module doc).

    T = 852: the 854 3-cliques of MediaPipe's tessellation minus the two that
    are not faces. MediaPipe's canonical mesh has 898 triangles; the other 46
    close the eyes (14 each) and the mouth (18), which stay open here.

    The global winding comes from MediaPipe itself: ``FACEMESH_TESSELATION`` is
    the set of directed half-edges of its canonical mesh (2,556 = 852 x 3), and on
    the boundary (face oval, lips, eyes) only one direction of each edge is
    present, which is the canonical winding. Those directions are front faces
    in the convention above (checked on real faces in tests/test_face_topology.py).
    """
    directed = set(_fmc.FACEMESH_TESSELATION)
    tris = _drop_spurious_cliques(_triangle_cliques(_undirected(a, b) for a, b in directed))
    tris = _orient_consistently(tris)
    ours = _half_edges(tris)
    boundary = [(a, b) for a, b in directed if (b, a) not in directed]
    agree = sum((a, b) in ours for a, b in boundary)
    if 2 * agree < len(boundary):
        tris = [(t[0], t[2], t[1]) for t in tris]
    return _frozen(np.asarray(tris, dtype=np.int32))


@functools.lru_cache(maxsize=None)
def mesh_edges() -> np.ndarray:
    """(E, 2) int32 unique undirected edges of :func:`face_triangles`, smaller index first."""
    edges = sorted({e for t in face_triangles().tolist() for e in _tri_edges(tuple(t))})
    return _frozen(np.asarray(edges, dtype=np.int32))


# ---------------------------------------------------------------------------
# Loops


def _chain_loops(edges: Iterable[Edge]) -> list[list[int]]:
    """Chain undirected edges in which every vertex has degree 2 into closed loops."""
    neighbours: dict[int, list[int]] = collections.defaultdict(list)
    for a, b in edges:
        neighbours[a].append(b)
        neighbours[b].append(a)
    if any(len(n) != 2 for n in neighbours.values()):
        raise ValueError("edge set is not a union of simple closed loops")
    loops, seen = [], set()
    for start in sorted(neighbours):
        if start in seen:
            continue
        loop, prev, cur = [start], start, neighbours[start][0]
        while cur != start:
            loop.append(cur)
            first, second = neighbours[cur]
            prev, cur = cur, (second if first == prev else first)
        seen.update(loop)
        loops.append(loop)
    return loops


def _chain_edges(edges: Iterable[Edge]) -> set[Edge]:
    """Undirected copies of MediaPipe's (possibly directed, duplicated) edges."""
    return {_undirected(a, b) for a, b in edges}


def _triangles_by_edge(tris: list[tuple[int, int, int]]) -> dict[Edge, list[int]]:
    """Undirected edge -> indices of the triangles that contain it."""
    by_edge: dict[Edge, list[int]] = collections.defaultdict(list)
    for i, t in enumerate(tris):
        for e in _tri_edges(t):
            by_edge[e].append(i)
    return by_edge


def _flood(seeds: Iterable[int], tris: list[tuple[int, int, int]], by_edge: dict[Edge, list[int]],
           walls: set[Edge]) -> set[int]:
    """Triangles reachable from ``seeds`` through shared edges that are not ``walls``."""
    region = set(seeds)
    queue = collections.deque(region)
    while queue:
        for e in _tri_edges(tris[queue.popleft()]):
            if e in walls:
                continue
            for j in by_edge[e]:
                if j not in region:
                    region.add(j)
                    queue.append(j)
    return region


def _triangles_inside(loop: list[int], tris: list[tuple[int, int, int]]) -> set[int]:
    """Indices of the triangles enclosed by a closed loop drawn on the mesh.

    The side of the loop that reaches the outer boundary of the face (the
    oval) is outside. A loop around a hole (an eye) encloses no triangles; the
    oval itself encloses all of them.
    """
    cut = {_undirected(loop[k], loop[(k + 1) % len(loop)]) for k in range(len(loop))}
    by_edge = _triangles_by_edge(tris)
    rim = _chain_edges(_fmc.FACEMESH_FACE_OVAL) - cut
    outside = _flood((i for e in rim for i in by_edge[e]), tris, by_edge, cut)
    return _flood({i for e in cut for i in by_edge[e]} - outside, tris, by_edge, cut)


def _oriented_loop(loop: list[int]) -> np.ndarray:
    """The loop run like the front faces on screen, starting at its lowest vertex.

    The triangles inside a loop run along it in their own winding (the boundary
    of a front-facing patch is counter-clockwise on screen); a loop around a
    hole is run against the winding of the triangles just outside it.
    """
    tris = [tuple(t) for t in face_triangles().tolist()]
    inside = _triangles_inside(loop, tris)
    if inside:
        half = _half_edges(tris[i] for i in inside)
    else:
        half = {(b, a) for a, b in _half_edges(tris)}
    a, b = loop[0], loop[1]
    if (a, b) not in half:
        loop = [loop[0]] + loop[:0:-1]
    k = int(np.argmin(loop))
    return _frozen(np.asarray(loop[k:] + loop[:k], dtype=np.int32))


def _single_loop(edges: Iterable[Edge]) -> np.ndarray:
    (loop,) = _chain_loops(_chain_edges(edges))
    return _oriented_loop(loop)


@functools.lru_cache(maxsize=None)
def _lip_loops() -> tuple[np.ndarray, np.ndarray]:
    """(outer, inner) lip loops: FACEMESH_LIPS holds both; the inner one is a mesh hole."""
    loops = _chain_loops(_chain_edges(_fmc.FACEMESH_LIPS))
    hole = {_undirected(a, b) for a, b in _fmc.FACEMESH_TESSELATION
            if (b, a) not in _fmc.FACEMESH_TESSELATION}
    inner = [lp for lp in loops
             if all(_undirected(lp[k], lp[(k + 1) % len(lp)]) in hole for k in range(len(lp)))]
    outer = [lp for lp in loops if lp not in inner]
    if len(inner) != 1 or len(outer) != 1:
        raise RuntimeError("unexpected MediaPipe lip topology")
    return _oriented_loop(outer[0]), _oriented_loop(inner[0])


def lips_outer() -> np.ndarray:
    """(20,) int32 ordered loop of the outer lip contour."""
    return _lip_loops()[0]


def lips_inner() -> np.ndarray:
    """(20,) int32 ordered loop of the inner lip contour: the mouth opening (a mesh hole)."""
    return _lip_loops()[1]


@functools.lru_cache(maxsize=None)
def left_eye() -> np.ndarray:
    """(16,) int32 ordered loop of the subject's left eye opening (a mesh hole)."""
    return _single_loop(_fmc.FACEMESH_LEFT_EYE)


@functools.lru_cache(maxsize=None)
def right_eye() -> np.ndarray:
    """(16,) int32 ordered loop of the subject's right eye opening (a mesh hole)."""
    return _single_loop(_fmc.FACEMESH_RIGHT_EYE)


@functools.lru_cache(maxsize=None)
def face_oval() -> np.ndarray:
    """(36,) int32 ordered loop of the face outline: the outer boundary of the mesh."""
    return _single_loop(_fmc.FACEMESH_FACE_OVAL)


@functools.lru_cache(maxsize=None)
def jaw() -> np.ndarray:
    """(13,) int32 ordered path along the face oval from one jaw corner over the chin to the other.

    Runs from ``JAW_CORNERS[0]`` (subject's right) to ``JAW_CORNERS[1]``.
    """
    oval = face_oval().tolist()
    n = len(oval)
    start = oval.index(JAW_CORNERS[0])
    forward = [oval[(start + k) % n] for k in range(n)]
    backward = [oval[(start - k) % n] for k in range(n)]
    for path in (forward, backward):
        end = path.index(JAW_CORNERS[1])
        if CHIN in path[:end]:
            return _frozen(np.asarray(path[:end + 1], dtype=np.int32))
    raise RuntimeError("chin not between the jaw corners")


def _vertices(edges: Iterable[Edge]) -> np.ndarray:
    return _frozen(np.asarray(sorted({v for e in edges for v in e}), dtype=np.int32))


@functools.lru_cache(maxsize=None)
def left_iris() -> np.ndarray:
    """(5,) int32: centre of the subject's left iris, then its 4-point ordered ring."""
    return _frozen(np.concatenate([[LEFT_IRIS_CENTER], _single_iris(_fmc.FACEMESH_LEFT_IRIS)]).astype(np.int32))


@functools.lru_cache(maxsize=None)
def right_iris() -> np.ndarray:
    """(5,) int32: centre of the subject's right iris, then its 4-point ordered ring."""
    return _frozen(np.concatenate([[RIGHT_IRIS_CENTER], _single_iris(_fmc.FACEMESH_RIGHT_IRIS)]).astype(np.int32))


def _single_iris(edges: Iterable[Edge]) -> np.ndarray:
    """The iris ring is not on the mesh, so it is only chained, not oriented."""
    (loop,) = _chain_loops(_chain_edges(edges))
    k = int(np.argmin(loop))
    return np.asarray(loop[k:] + loop[:k], dtype=np.int32)


def irises() -> np.ndarray:
    """(10,) int32: the iris landmarks 468-477 (refine_landmarks only)."""
    return _frozen(np.arange(NUM_MESH_VERTICES, NUM_LANDMARKS, dtype=np.int32))


@functools.lru_cache(maxsize=None)
def nose() -> np.ndarray:
    """Sorted int32 vertices of MediaPipe's nose contours (bridge, tip, nostrils)."""
    return _vertices(_fmc.FACEMESH_NOSE)


@functools.lru_cache(maxsize=None)
def left_brow() -> np.ndarray:
    """Sorted int32 vertices of the subject's left eyebrow (upper and lower edge)."""
    return _vertices(_fmc.FACEMESH_LEFT_EYEBROW)


@functools.lru_cache(maxsize=None)
def right_brow() -> np.ndarray:
    """Sorted int32 vertices of the subject's right eyebrow (upper and lower edge)."""
    return _vertices(_fmc.FACEMESH_RIGHT_EYEBROW)


def loop_cap_triangles(loop: np.ndarray) -> np.ndarray:
    """(len(loop) - 2, 3) int32 triangles closing a loop, front faces, as a zig-zag strip.

    The strip zips the two sides of the loop together from its start, so for an
    eye or the mouth (started at a corner) the triangles collapse without
    folding when the lids or lips close. ``loop`` must be ordered as returned
    by this module (running like the front faces).
    """
    loop = np.asarray(loop, dtype=np.int32)
    n = len(loop)
    tris, lo, hi = [], 1, n - 1
    # Walk inward from both ends of the loop; each step adds one triangle.
    tris.append((loop[0], loop[lo], loop[hi]))
    while hi - lo > 1:
        if (hi - lo) % 2:
            tris.append((loop[lo], loop[lo + 1], loop[hi]))
            lo += 1
        else:
            tris.append((loop[lo], loop[hi - 1], loop[hi]))
            hi -= 1
    return np.asarray(tris, dtype=np.int32)


def corner_start(loop: np.ndarray, corner: int) -> np.ndarray:
    """The same loop, rotated to start at vertex ``corner`` (e.g. a mouth or eye corner)."""
    loop = np.asarray(loop)
    k = int(np.flatnonzero(loop == corner)[0])
    return np.roll(loop, -k)


def loop_edges(loop: np.ndarray) -> list[Edge]:
    """The closed loop's undirected edges, smaller index first."""
    return [_undirected(int(a), int(b)) for a, b in zip(loop, np.roll(loop, -1))]


__all__ = [
    "NUM_MESH_VERTICES", "NUM_LANDMARKS", "CHIN", "JAW_CORNERS", "NOSE_TIP",
    "LEFT_IRIS_CENTER", "RIGHT_IRIS_CENTER",
    "face_triangles", "mesh_edges", "lips_outer", "lips_inner", "left_eye", "right_eye",
    "face_oval", "jaw", "left_iris", "right_iris", "irises", "nose", "left_brow", "right_brow",
    "loop_cap_triangles", "corner_start", "loop_edges",
]
