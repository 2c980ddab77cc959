"""Face-mesh triangles and region loops rebuilt from MediaPipe's edge sets."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from preprocess import face_topology as topo


def _directed_edges(tris: np.ndarray) -> collections.Counter:
    return collections.Counter((int(t[k]), int(t[(k + 1) % 3])) for t in tris for k in range(3))


def _undirected_counts(tris: np.ndarray) -> collections.Counter:
    return collections.Counter(tuple(sorted((int(t[k]), int(t[(k + 1) % 3])))) for t in tris for k in range(3))


def test_triangle_count_and_indices():
    tris = topo.face_triangles()
    assert tris.dtype == np.int32 and tris.shape[1] == 3
    assert 850 <= len(tris) <= 900
    assert set(np.unique(tris).tolist()) == set(range(topo.NUM_MESH_VERTICES))
    assert len({tuple(sorted(t)) for t in tris.tolist()}) == len(tris), "duplicate triangles"
    assert np.all(tris[:, 0] != tris[:, 1]) and np.all(tris[:, 1] != tris[:, 2]) and np.all(tris[:, 0] != tris[:, 2])
    # The two 3-cliques of the tessellation that span a nostril fan are not faces.
    assert not {(49, 64, 129), (279, 294, 358)} & {tuple(sorted(t)) for t in tris.tolist()}


def test_mesh_is_manifold_and_consistently_oriented():
    tris = topo.face_triangles()
    assert max(_undirected_counts(tris).values()) <= 2
    directed = _directed_edges(tris)
    # Each half-edge once; an interior edge is run once in each direction.
    assert max(directed.values()) == 1
    for (a, b), n in _undirected_counts(tris).items():
        if n == 2:
            assert (a, b) in directed and (b, a) in directed


def test_boundary_is_oval_lips_and_eyes():
    tris = topo.face_triangles()
    boundary = {e for e, n in _undirected_counts(tris).items() if n == 1}
    holes = {"face_oval": topo.face_oval(), "lips_inner": topo.lips_inner(),
             "left_eye": topo.left_eye(), "right_eye": topo.right_eye()}
    expected = set().union(*(topo.loop_edges(loop) for loop in holes.values()))
    assert boundary == expected
    # The openings are not covered: no triangle has all its vertices on one opening.
    for name in ("lips_inner", "left_eye", "right_eye"):
        ring = set(holes[name].tolist())
        assert not any(set(t) <= ring for t in tris.tolist()), name


@pytest.mark.parametrize("loop_fn, n", [(topo.lips_outer, 20), (topo.lips_inner, 20), (topo.left_eye, 16),
                                        (topo.right_eye, 16), (topo.face_oval, 36)])
def test_loops_are_closed_chains(loop_fn, n):
    loop = loop_fn()
    assert loop.dtype == np.int32 and len(loop) == n == len(set(loop.tolist()))
    assert loop[0] == loop.min()
    mesh = {tuple(e) for e in topo.mesh_edges().tolist()}
    # Consecutive vertices (and last -> first) are joined by a mesh edge.
    assert all(e in mesh for e in topo.loop_edges(loop))


def test_lip_loops_are_disjoint_and_nested_regions_exist():
    assert not set(topo.lips_outer().tolist()) & set(topo.lips_inner().tolist())
    assert not set(topo.left_eye().tolist()) & set(topo.right_eye().tolist())
    jaw = topo.jaw().tolist()
    assert jaw[0] == topo.JAW_CORNERS[0] and jaw[-1] == topo.JAW_CORNERS[1] and topo.CHIN in jaw
    assert set(jaw) <= set(topo.face_oval().tolist())
    assert topo.irises().tolist() == list(range(468, 478))
    assert topo.left_iris()[0] == topo.LEFT_IRIS_CENTER and topo.right_iris()[0] == topo.RIGHT_IRIS_CENTER
    assert topo.NOSE_TIP in topo.nose()


def test_cached_arrays_are_read_only():
    with pytest.raises(ValueError):
        topo.face_triangles()[0, 0] = 1
    assert topo.face_triangles() is topo.face_triangles()


def test_cap_closes_a_loop_with_matching_orientation():
    loop = topo.corner_start(topo.left_eye(), 263)
    cap = topo.loop_cap_triangles(loop)
    assert cap.shape == (len(loop) - 2, 3)
    closed = np.concatenate([topo.face_triangles(), cap])
    counts = _undirected_counts(closed)
    assert all(counts[e] == 2 for e in topo.loop_edges(loop)), "cap must seal every eye edge"
    assert max(_directed_edges(closed).values()) == 1, "cap winding must match the mesh"


@pytest.fixture(scope="module")
def frontal_face(may_landmarks) -> np.ndarray:
    """(478, 3) MediaPipe landmarks of a frontal real face, the first frame of may_5s.mp4
    (session fixture ``may_landmarks``): x, y pixels (y down), z toward the back of the head."""
    assert may_landmarks.valid[0], "MediaPipe found no face in the first frame of may_5s.mp4"
    return may_landmarks.points[0]


def test_front_faces_point_toward_the_camera(frontal_face):
    p = frontal_face[topo.face_triangles()]
    normals = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
    assert np.mean(normals[:, 2] < 0) > 0.97


def _signed_area(points: np.ndarray) -> float:
    """Shoelace area in pixel coordinates (y down): negative for counter-clockwise on screen."""
    x, y = points[:, 0], points[:, 1]
    return 0.5 * float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))


@pytest.mark.parametrize("loop_fn", [topo.lips_outer, topo.lips_inner, topo.left_eye, topo.right_eye,
                                     topo.face_oval])
def test_loops_run_like_front_faces(frontal_face, loop_fn):
    assert _signed_area(frontal_face[loop_fn()]) < 0
    assert _signed_area(frontal_face[topo.face_triangles()[0]]) < 0


def test_left_means_the_subjects_left(frontal_face):
    # The subject's left is on the image's right.
    assert frontal_face[topo.left_eye(), 0].mean() > frontal_face[topo.right_eye(), 0].mean()
    assert frontal_face[topo.JAW_CORNERS[1], 0] > frontal_face[topo.JAW_CORNERS[0], 0]
