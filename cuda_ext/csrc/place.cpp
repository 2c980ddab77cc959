// Per-frame placement of a fitted avatar's Gaussians, for rendering (no gradients): one pass in C++
// over what avatar.model.gaussians.AvatarGaussians._place_frozen computes in PyTorch (its reference,
// which tests compare against). In PyTorch the same work is some 60 small operations, 5-9 ms a frame
// for 47k Gaussians on one core, almost all of it per-operation overhead; here it is well under 1 ms.
//
// Groups in order: face (bound to triangles), mouth (head frame, lower part moves with the jaw), head
// (rigid), torso (camera frame, follows the head by a fraction). Quaternions are wxyz.
#include <torch/extension.h>

#include <algorithm>
#include <cmath>

using torch::Tensor;

namespace {

constexpr float kMinEdge = 1e-9f;  // avatar.model.binding.MIN_EDGE_M

struct V3 {
    float x, y, z;
};
inline V3 sub(V3 a, V3 b) { return {a.x - b.x, a.y - b.y, a.z - b.z}; }
inline V3 cross(V3 a, V3 b) { return {a.y * b.z - a.z * b.y, a.z * b.x - a.x * b.z, a.x * b.y - a.y * b.x}; }
inline float norm(V3 a) { return std::sqrt(a.x * a.x + a.y * a.y + a.z * a.z); }
inline V3 scale(V3 a, float s) { return {a.x * s, a.y * s, a.z * s}; }

// Hamilton product a * b (b first, then a), as avatar.core.rotations.quat_multiply.
inline void quat_mul(const float* a, const float* b, float* out) {
    out[0] = a[0] * b[0] - a[1] * b[1] - a[2] * b[2] - a[3] * b[3];
    out[1] = a[0] * b[1] + a[1] * b[0] + a[2] * b[3] - a[3] * b[2];
    out[2] = a[0] * b[2] - a[1] * b[3] + a[2] * b[0] + a[3] * b[1];
    out[3] = a[0] * b[3] + a[1] * b[2] - a[2] * b[1] + a[3] * b[0];
}

// Row-major 3x3 rotation -> unit wxyz quaternion with w >= 0: Shepperd's method, as
// avatar.core.rotations.rotmat_to_quat (the candidate of the largest of trace, m00, m11, m22).
void rotmat_to_quat(const float* m, float* q) {
    const float m00 = m[0], m01 = m[1], m02 = m[2], m10 = m[3], m11 = m[4], m12 = m[5], m20 = m[6],
                m21 = m[7], m22 = m[8];
    const float trace = m00 + m11 + m22;
    float c[4];
    if (trace >= m00 && trace >= m11 && trace >= m22) {
        c[0] = 1 + trace, c[1] = m21 - m12, c[2] = m02 - m20, c[3] = m10 - m01;
    } else if (m00 >= m11 && m00 >= m22) {
        c[0] = m21 - m12, c[1] = 1 + m00 - m11 - m22, c[2] = m01 + m10, c[3] = m02 + m20;
    } else if (m11 >= m22) {
        c[0] = m02 - m20, c[1] = m01 + m10, c[2] = 1 - m00 + m11 - m22, c[3] = m12 + m21;
    } else {
        c[0] = m10 - m01, c[1] = m02 + m20, c[2] = m12 + m21, c[3] = 1 - m00 - m11 + m22;
    }
    float n = std::max(std::sqrt(c[0] * c[0] + c[1] * c[1] + c[2] * c[2] + c[3] * c[3]), 1e-12f);
    if (c[0] < 0) n = -n;
    for (int k = 0; k < 4; ++k) q[k] = c[k] / n;
}

void check(const Tensor& t, const char* name, torch::ScalarType type, int64_t cols) {
    TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == type && t.is_contiguous(), name,
                " must be a contiguous CPU tensor of ", type);
    if (cols > 0) TORCH_CHECK(t.dim() == 2 && t.size(1) == cols, name, " must be (N, ", cols, ")");
}

}  // namespace

// verts (V, 3) the frame's mesh; faces (T, 3) int64; viewmat and rest_viewmat (4, 4) camera-from-head.
// face: parent (Nf,) int64, local means (Nf, 3), unit local quats (Nf, 4), local scales (Nf, 3) (exp'd).
// mouth: means (Nm, 3), jaw (Nm,), jaw offset (3,); head: means (Nh, 3); rigid_quats (Nm + Nh, 4) mouth, head;
// torso: means (Nt, 3) camera frame, follow (Nt,) in [0, 1], quats (Nt, 4), motion (3, 4) camera frame
// (the shoulders' tracked motion, p -> motion[:, :3] p + motion[:, 3]);
// scales_rest (Nm + Nh + Nt, 3) metres. Returns means (N, 3), quats (N, 4), scales (N, 3), head frame.
std::vector<Tensor> place(Tensor verts, Tensor faces, Tensor viewmat, Tensor rest_viewmat, Tensor parent,
                          Tensor face_means, Tensor face_quats, Tensor face_scales, Tensor mouth_means,
                          Tensor mouth_jaw, Tensor jaw_offset, Tensor head_means, Tensor rigid_quats,
                          Tensor torso_means, Tensor torso_follow, Tensor torso_quats, Tensor torso_motion,
                          Tensor scales_rest) {
    const auto f32 = torch::kFloat32;
    check(verts, "verts", f32, 3);
    check(faces, "faces", torch::kInt64, 3);
    check(viewmat, "viewmat", f32, 4);
    check(rest_viewmat, "rest_viewmat", f32, 4);
    check(parent, "parent", torch::kInt64, 0);
    check(face_means, "face_means", f32, 3);
    check(face_quats, "face_quats", f32, 4);
    check(face_scales, "face_scales", f32, 3);
    check(mouth_means, "mouth_means", f32, 3);
    check(mouth_jaw, "mouth_jaw", f32, 0);
    check(jaw_offset, "jaw_offset", f32, 0);
    check(head_means, "head_means", f32, 3);
    check(rigid_quats, "rigid_quats", f32, 4);
    check(torso_means, "torso_means", f32, 3);
    check(torso_follow, "torso_follow", f32, 0);
    check(torso_quats, "torso_quats", f32, 4);
    check(torso_motion, "torso_motion", f32, 4);
    check(scales_rest, "scales_rest", f32, 3);
    const int64_t T = faces.size(0), V = verts.size(0), nf = parent.size(0), nm = mouth_means.size(0),
                  nh = head_means.size(0), nt = torso_means.size(0), n = nf + nm + nh + nt;
    TORCH_CHECK(face_means.size(0) == nf && face_quats.size(0) == nf && face_scales.size(0) == nf,
                "face tensors must have one row per parent");
    TORCH_CHECK(mouth_jaw.numel() == nm && jaw_offset.numel() == 3 && rigid_quats.size(0) == nm + nh &&
                    torso_follow.numel() == nt && torso_quats.size(0) == nt && torso_motion.size(0) == 3 && scales_rest.size(0) == nm + nh + nt,
                "group tensors disagree in size");

    // triangle frames: centroid, rotation [x y z] (columns; stored row-major), size, quaternion
    std::vector<float> tri(static_cast<size_t>(T) * 17);
    const float* vp = verts.data_ptr<float>();
    const int64_t* fp = faces.data_ptr<int64_t>();
    for (int64_t t = 0; t < T; ++t) {
        const int64_t ia = fp[3 * t], ib = fp[3 * t + 1], ic = fp[3 * t + 2];
        TORCH_CHECK(ia >= 0 && ia < V && ib >= 0 && ib < V && ic >= 0 && ic < V, "face index out of range");
        const V3 a{vp[3 * ia], vp[3 * ia + 1], vp[3 * ia + 2]}, b{vp[3 * ib], vp[3 * ib + 1], vp[3 * ib + 2]},
            c{vp[3 * ic], vp[3 * ic + 1], vp[3 * ic + 2]};
        const V3 base = sub(b, a);
        const float base_len = std::max(norm(base), kMinEdge);
        const V3 x = scale(base, 1.0f / base_len);
        const V3 normal = cross(base, sub(c, a));
        const float double_area = std::max(norm(normal), kMinEdge * kMinEdge);
        const V3 z = scale(normal, 1.0f / double_area);
        const V3 y = cross(z, x);
        float* row = &tri[static_cast<size_t>(t) * 17];
        const float rot[9] = {x.x, y.x, z.x, x.y, y.y, z.y, x.z, y.z, z.z};
        std::copy(rot, rot + 9, row);
        row[9] = (a.x + b.x + c.x) / 3.0f, row[10] = (a.y + b.y + c.y) / 3.0f, row[11] = (a.z + b.z + c.z) / 3.0f;
        row[12] = 0.5f * (base_len + double_area / base_len);
        rotmat_to_quat(rot, row + 13);
    }

    auto means = torch::empty({n, 3}, verts.options());
    auto quats = torch::empty({n, 4}, verts.options());
    auto scales = torch::empty({n, 3}, verts.options());
    float *mo = means.data_ptr<float>(), *qo = quats.data_ptr<float>(), *so = scales.data_ptr<float>();

    const int64_t* pp = parent.data_ptr<int64_t>();
    const float *lm = face_means.data_ptr<float>(), *lq = face_quats.data_ptr<float>(),
                *ls = face_scales.data_ptr<float>();
    for (int64_t i = 0; i < nf; ++i) {
        const int64_t t = pp[i];
        TORCH_CHECK(t >= 0 && t < T, "parent triangle out of range");
        const float* row = &tri[static_cast<size_t>(t) * 17];
        const float k = row[12], *m = lm + 3 * i;
        for (int r = 0; r < 3; ++r) {
            mo[3 * i + r] = row[9 + r] + k * (row[3 * r] * m[0] + row[3 * r + 1] * m[1] + row[3 * r + 2] * m[2]);
            so[3 * i + r] = ls[3 * i + r] * k;
        }
        quat_mul(row + 13, lq + 4 * i, qo + 4 * i);
    }

    const float *mm = mouth_means.data_ptr<float>(), *mj = mouth_jaw.data_ptr<float>(),
                *jo = jaw_offset.data_ptr<float>();
    for (int64_t i = 0; i < nm; ++i)
        for (int r = 0; r < 3; ++r) mo[3 * (nf + i) + r] = mm[3 * i + r] + mj[i] * jo[r];
    std::copy(head_means.data_ptr<float>(), head_means.data_ptr<float>() + 3 * nh, mo + 3 * (nf + nm));

    // the torso: the head moved by motion = viewmat @ rest^-1 in the camera frame; a Gaussian follows it
    // by its fraction and the shoulders' motion by the rest, then goes into the head frame (x_head = R^T (x_cam - t))
    const float* V4 = viewmat.data_ptr<float>();
    const float* R4 = rest_viewmat.data_ptr<float>();
    float R[9], Rr[9], M[9], mt[3], Rt[9];
    for (int r = 0; r < 3; ++r)
        for (int c = 0; c < 3; ++c) R[3 * r + c] = V4[4 * r + c], Rr[3 * r + c] = R4[4 * r + c];
    for (int r = 0; r < 3; ++r)
        for (int c = 0; c < 3; ++c) {
            M[3 * r + c] = R[3 * r] * Rr[3 * c] + R[3 * r + 1] * Rr[3 * c + 1] + R[3 * r + 2] * Rr[3 * c + 2];
            Rt[3 * r + c] = R[3 * c + r];
        }
    const float t[3] = {V4[3], V4[7], V4[11]}, rt[3] = {R4[3], R4[7], R4[11]};
    for (int r = 0; r < 3; ++r) mt[r] = t[r] - (M[3 * r] * rt[0] + M[3 * r + 1] * rt[1] + M[3 * r + 2] * rt[2]);
    float head_from_camera[4];
    rotmat_to_quat(Rt, head_from_camera);
    const float *tm = torso_means.data_ptr<float>(), *tf = torso_follow.data_ptr<float>(),
                *tq = torso_quats.data_ptr<float>(), *tt = torso_motion.data_ptr<float>();
    const int64_t t0 = nf + nm + nh;
    for (int64_t i = 0; i < nt; ++i) {
        const float* p = tm + 3 * i;
        float cam[3];
        for (int r = 0; r < 3; ++r) {
            const float followed = M[3 * r] * p[0] + M[3 * r + 1] * p[1] + M[3 * r + 2] * p[2] + mt[r];
            const float moved = tt[4 * r] * p[0] + tt[4 * r + 1] * p[1] + tt[4 * r + 2] * p[2] + tt[4 * r + 3];
            cam[r] = p[r] + tf[i] * (followed - p[r]) + (1.0f - tf[i]) * (moved - p[r]) - t[r];
        }
        for (int r = 0; r < 3; ++r) mo[3 * (t0 + i) + r] = R[r] * cam[0] + R[3 + r] * cam[1] + R[6 + r] * cam[2];
        quat_mul(head_from_camera, tq + 4 * i, qo + 4 * (t0 + i));
    }

    // mouth and head quaternions, and every scale but the face's, as they are
    std::copy(rigid_quats.data_ptr<float>(), rigid_quats.data_ptr<float>() + 4 * (nm + nh), qo + 4 * nf);
    std::copy(scales_rest.data_ptr<float>(), scales_rest.data_ptr<float>() + 3 * (nm + nh + nt), so + 3 * nf);
    return {means, quats, scales};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.def("place", &place, py::call_guard<py::gil_scoped_release>(),
          "Place a fitted avatar's Gaussians for one frame (see place.cpp)");
}
