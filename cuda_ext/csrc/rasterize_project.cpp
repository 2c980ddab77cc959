// EWA projection of 3D Gaussians to 2D conics, forward and backward (see rasterize.h).
//
// One projected Gaussian per (camera, gaussian) pair; every pair is independent, so
// the forward is a flat parallel loop. The backward recomputes the forward
// intermediates (cheaper than storing them) and sums over cameras in camera order
// inside one thread, which keeps it deterministic for any thread count.
#include <algorithm>
#include <cmath>
#include <vector>

#include "rasterize.h"

namespace avatar_raster {
namespace {

// 3x3 matrices are row-major float[9].
inline void matmul(const float* a, const float* b, float* out) {
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j)
            out[3 * i + j] = a[3 * i] * b[j] + a[3 * i + 1] * b[3 + j] + a[3 * i + 2] * b[6 + j];
}

inline void matmul_bt(const float* a, const float* b, float* out) {  // a @ b^T
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j)
            out[3 * i + j] = a[3 * i] * b[3 * j] + a[3 * i + 1] * b[3 * j + 1] + a[3 * i + 2] * b[3 * j + 2];
}

inline void matmul_at(const float* a, const float* b, float* out) {  // a^T @ b
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j)
            out[3 * i + j] = a[i] * b[j] + a[3 + i] * b[3 + j] + a[6 + i] * b[6 + j];
}

// Pinhole camera with gsplat's clamping of the projection Jacobian to 1.3x the field
// of view, which keeps Gaussians far outside the image from blowing up.
struct View {
    float R[9], t[3];
    float fx, fy, cx, cy;
    float lim_x_pos, lim_x_neg, lim_y_pos, lim_y_neg;
};

View make_view(const float* viewmat, const float* K, int width, int height) {
    View v;
    for (int i = 0; i < 3; ++i) {
        for (int j = 0; j < 3; ++j) v.R[3 * i + j] = viewmat[4 * i + j];
        v.t[i] = viewmat[4 * i + 3];
    }
    v.fx = K[0];
    v.cx = K[2];
    v.fy = K[4];
    v.cy = K[5];
    const float tan_fovx = 0.5f * width / v.fx, tan_fovy = 0.5f * height / v.fy;
    v.lim_x_pos = (width - v.cx) / v.fx + 0.3f * tan_fovx;
    v.lim_x_neg = v.cx / v.fx + 0.3f * tan_fovx;
    v.lim_y_pos = (height - v.cy) / v.fy + 0.3f * tan_fovy;
    v.lim_y_neg = v.cy / v.fy + 0.3f * tan_fovy;
    return v;
}

std::vector<View> make_views(const ProjectionSettings& s, const float* viewmats, const float* Ks) {
    std::vector<View> views;
    for (int c = 0; c < s.cameras; ++c)
        views.push_back(make_view(viewmats + 16 * c, Ks + 9 * c, s.width, s.height));
    return views;
}

// Rotation of a unit quaternion (w, x, y, z).
inline void quat_to_rotmat(const float* q, float* R) {
    const float w = q[0], x = q[1], y = q[2], z = q[3];
    R[0] = 1.f - 2.f * (y * y + z * z);
    R[1] = 2.f * (x * y - w * z);
    R[2] = 2.f * (x * z + w * y);
    R[3] = 2.f * (x * y + w * z);
    R[4] = 1.f - 2.f * (x * x + z * z);
    R[5] = 2.f * (y * z - w * x);
    R[6] = 2.f * (x * z - w * y);
    R[7] = 2.f * (y * z + w * x);
    R[8] = 1.f - 2.f * (x * x + y * y);
}

// Vector-Jacobian product of quat_to_rotmat: v_R (3x3) -> v_q (4).
inline void quat_to_rotmat_vjp(const float* q, const float* G, float* v_q) {
    const float w = q[0], x = q[1], y = q[2], z = q[3];
    v_q[0] = 2.f * (-z * G[1] + y * G[2] + z * G[3] - x * G[5] - y * G[6] + x * G[7]);
    v_q[1] = 2.f * (y * G[1] + z * G[2] + y * G[3] - 2.f * x * G[4] - w * G[5] + z * G[6] +
                    w * G[7] - 2.f * x * G[8]);
    v_q[2] = 2.f * (-2.f * y * G[0] + x * G[1] + w * G[2] + x * G[3] + z * G[5] - w * G[6] +
                    z * G[7] - 2.f * y * G[8]);
    v_q[3] = 2.f * (-2.f * z * G[0] - w * G[1] + x * G[2] + w * G[3] - 2.f * z * G[4] +
                    y * G[5] + x * G[6] + y * G[7]);
}

constexpr float kMinQuatNorm = 1e-12f;

// Everything the forward computes for one (camera, gaussian) pair; the backward reuses it.
struct Projected {
    bool visible;
    float mean_c[3];          // camera-space mean, metres
    float qn[4], qnorm;       // normalised quaternion and the norm it was divided by
    float Rg[9], M[9];        // Gaussian rotation, M = Rg diag(scale)
    float cov_c[9];           // camera-space 3D covariance
    float tx, ty;             // clamped x, y used in the Jacobian
    bool x_clamped, y_clamped;
    float J[6];               // 2x3 projection Jacobian, row-major
    float a, b, c;            // dilated 2D covariance [[a, b], [b, c]], px^2
    float det;
    float mean2d[2];
    float extent[2];
    int32_t radius[2];
};

Projected project_one(const View& v, const float* mean, const float* quat, const float* scale,
                      float opacity, const ProjectionSettings& s) {
    Projected p;
    p.visible = false;
    for (int i = 0; i < 3; ++i)
        p.mean_c[i] = v.R[3 * i] * mean[0] + v.R[3 * i + 1] * mean[1] + v.R[3 * i + 2] * mean[2] + v.t[i];
    const float z = p.mean_c[2];
    if (!(z > s.near_plane && z < s.far_plane)) return p;

    p.qnorm = std::max(std::sqrt(quat[0] * quat[0] + quat[1] * quat[1] + quat[2] * quat[2] +
                                 quat[3] * quat[3]), kMinQuatNorm);
    for (int i = 0; i < 4; ++i) p.qn[i] = quat[i] / p.qnorm;
    quat_to_rotmat(p.qn, p.Rg);
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) p.M[3 * i + j] = p.Rg[3 * i + j] * scale[j];
    float RM[9];  // cov_c = R M M^T R^T = (R M)(R M)^T
    matmul(v.R, p.M, RM);
    matmul_bt(RM, RM, p.cov_c);

    const float rz = 1.f / z, rz2 = rz * rz;
    const float ux = p.mean_c[0] * rz, uy = p.mean_c[1] * rz;
    p.x_clamped = ux < -v.lim_x_neg || ux > v.lim_x_pos;
    p.y_clamped = uy < -v.lim_y_neg || uy > v.lim_y_pos;
    p.tx = z * std::min(v.lim_x_pos, std::max(-v.lim_x_neg, ux));
    p.ty = z * std::min(v.lim_y_pos, std::max(-v.lim_y_neg, uy));
    p.J[0] = v.fx * rz;
    p.J[1] = 0.f;
    p.J[2] = -v.fx * p.tx * rz2;
    p.J[3] = 0.f;
    p.J[4] = v.fy * rz;
    p.J[5] = -v.fy * p.ty * rz2;

    float JS[6];  // J @ cov_c
    for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 3; ++j)
            JS[3 * i + j] = p.J[3 * i] * p.cov_c[j] + p.J[3 * i + 1] * p.cov_c[3 + j] +
                            p.J[3 * i + 2] * p.cov_c[6 + j];
    p.a = JS[0] * p.J[0] + JS[1] * p.J[1] + JS[2] * p.J[2] + s.eps2d;
    p.b = JS[0] * p.J[3] + JS[1] * p.J[4] + JS[2] * p.J[5];
    p.c = JS[3] * p.J[3] + JS[4] * p.J[4] + JS[5] * p.J[5] + s.eps2d;
    p.det = p.a * p.c - p.b * p.b;
    if (!(p.det > 0.f)) return p;
    if (!(opacity >= kAlphaThreshold)) return p;

    // Opacity-aware footprint: the ellipse where opacity * exp(-sigma) >= 1/255.
    const float extend = std::min(kExtendMax, std::sqrt(2.f * std::log(opacity / kAlphaThreshold)));
    p.extent[0] = extend * std::sqrt(p.a);
    p.extent[1] = extend * std::sqrt(p.c);
    p.radius[0] = static_cast<int32_t>(std::ceil(p.extent[0]));
    p.radius[1] = static_cast<int32_t>(std::ceil(p.extent[1]));
    if (p.radius[0] <= 0 && p.radius[1] <= 0) return p;

    p.mean2d[0] = v.fx * ux + v.cx;
    p.mean2d[1] = v.fy * uy + v.cy;
    if (p.mean2d[0] + p.radius[0] <= 0.f || p.mean2d[0] - p.radius[0] >= s.width ||
        p.mean2d[1] + p.radius[1] <= 0.f || p.mean2d[1] - p.radius[1] >= s.height)
        return p;
    p.visible = true;
    return p;
}

// Backward of project_one for one pair: adds to v_mean (3), v_quat (4), v_scale (3).
void project_one_vjp(const View& v, const Projected& p, const float* scale, const float* v_mean2d,
                     const float* v_conic, float v_depth, float* v_mean, float* v_quat,
                     float* v_scale) {
    // conic Q = inverse(Sigma2d): dL/dSigma2d = -Q G Q, G the symmetric gradient of Q
    // (the off-diagonal conic entry appears twice in Q, so each half gets half of it).
    const float inv_det = 1.f / p.det;
    const float qa = p.c * inv_det, qb = -p.b * inv_det, qc = p.a * inv_det;
    const float ga = v_conic[0], gb = 0.5f * v_conic[1], gc = v_conic[2];
    const float qg00 = qa * ga + qb * gb, qg01 = qa * gb + qb * gc;
    const float qg10 = qb * ga + qc * gb, qg11 = qb * gb + qc * gc;
    const float G2[4] = {-(qg00 * qa + qg01 * qb), -(qg00 * qb + qg01 * qc),
                         -(qg10 * qa + qg11 * qb), -(qg10 * qb + qg11 * qc)};

    const float z = p.mean_c[2], rz = 1.f / z, rz2 = rz * rz, rz3 = rz2 * rz;
    float v_mc[3];
    v_mc[0] = v_mean2d[0] * v.fx * rz;
    v_mc[1] = v_mean2d[1] * v.fy * rz;
    v_mc[2] = -(v_mean2d[0] * v.fx * p.mean_c[0] + v_mean2d[1] * v.fy * p.mean_c[1]) * rz2 + v_depth;

    // Sigma2d = J cov_c J^T: dL/dcov_c = J^T G2 J, dL/dJ = 2 G2 J cov_c.
    float G2J[6];
    for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 3; ++j) G2J[3 * i + j] = G2[2 * i] * p.J[j] + G2[2 * i + 1] * p.J[3 + j];
    float v_cov_c[9];
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) v_cov_c[3 * i + j] = p.J[i] * G2J[j] + p.J[3 + i] * G2J[3 + j];
    float v_J[6];
    for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 3; ++j)
            v_J[3 * i + j] = 2.f * (G2J[3 * i] * p.cov_c[j] + G2J[3 * i + 1] * p.cov_c[3 + j] +
                                    G2J[3 * i + 2] * p.cov_c[6 + j]);
    v_mc[2] += -v.fx * rz2 * v_J[0] - v.fy * rz2 * v_J[4];
    // J02 = -fx tx / z^2 with tx = x, or tx = z * limit when clamped (then dtx/dz = tx / z).
    if (p.x_clamped) {
        v_mc[2] += v.fx * p.tx * rz3 * v_J[2];
    } else {
        v_mc[0] += -v.fx * rz2 * v_J[2];
        v_mc[2] += 2.f * v.fx * p.tx * rz3 * v_J[2];
    }
    if (p.y_clamped) {
        v_mc[2] += v.fy * p.ty * rz3 * v_J[5];
    } else {
        v_mc[1] += -v.fy * rz2 * v_J[5];
        v_mc[2] += 2.f * v.fy * p.ty * rz3 * v_J[5];
    }
    for (int j = 0; j < 3; ++j)
        v_mean[j] += v.R[j] * v_mc[0] + v.R[3 + j] * v_mc[1] + v.R[6 + j] * v_mc[2];

    // cov_c = R cov_w R^T; cov_w = M M^T with M = Rg diag(scale).
    float tmp[9], v_cov_w[9], v_M[9];
    matmul_at(v.R, v_cov_c, tmp);
    matmul(tmp, v.R, v_cov_w);
    matmul(v_cov_w, p.M, v_M);
    float v_Rg[9];
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) {
            v_M[3 * i + j] *= 2.f;  // v_cov_w is symmetric
            v_Rg[3 * i + j] = v_M[3 * i + j] * scale[j];
        }
    for (int j = 0; j < 3; ++j)
        v_scale[j] += v_M[j] * p.Rg[j] + v_M[3 + j] * p.Rg[3 + j] + v_M[6 + j] * p.Rg[6 + j];
    float v_qn[4];
    quat_to_rotmat_vjp(p.qn, v_Rg, v_qn);
    // q / |q|: project out the radial part (unless the norm was clamped).
    const bool clamped = p.qnorm <= kMinQuatNorm;
    const float dot = clamped ? 0.f : p.qn[0] * v_qn[0] + p.qn[1] * v_qn[1] + p.qn[2] * v_qn[2] +
                                          p.qn[3] * v_qn[3];
    for (int i = 0; i < 4; ++i) v_quat[i] += (v_qn[i] - p.qn[i] * dot) / p.qnorm;
}

}  // namespace

void project_forward(const ProjectionSettings& s, const float* means, const float* quats,
                     const float* scales, const float* opacities, const float* viewmats,
                     const float* Ks, float* means2d, float* conics, float* depths,
                     float* extents, int32_t* radii, int threads) {
    const int64_t total = static_cast<int64_t>(s.cameras) * s.gaussians;
    const std::vector<View> views = make_views(s, viewmats, Ks);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t cg = 0; cg < total; ++cg) {
        const int c = static_cast<int>(cg / s.gaussians);
        const int64_t g = cg % s.gaussians;
        const Projected p =
            project_one(views[c], means + 3 * g, quats + 4 * g, scales + 3 * g, opacities[g], s);
        if (!p.visible) {
            means2d[2 * cg] = means2d[2 * cg + 1] = 0.f;
            conics[3 * cg] = conics[3 * cg + 1] = conics[3 * cg + 2] = 0.f;
            depths[cg] = 0.f;
            extents[2 * cg] = extents[2 * cg + 1] = 0.f;
            radii[cg] = 0;
            continue;
        }
        means2d[2 * cg] = p.mean2d[0];
        means2d[2 * cg + 1] = p.mean2d[1];
        const float inv_det = 1.f / p.det;
        conics[3 * cg] = p.c * inv_det;
        conics[3 * cg + 1] = -p.b * inv_det;
        conics[3 * cg + 2] = p.a * inv_det;
        depths[cg] = p.mean_c[2];
        extents[2 * cg] = p.extent[0];
        extents[2 * cg + 1] = p.extent[1];
        radii[cg] = std::max(p.radius[0], p.radius[1]);
    }
}

void project_backward(const ProjectionSettings& s, const float* means, const float* quats,
                      const float* scales, const float* viewmats, const float* Ks,
                      const int32_t* radii, const float* v_means2d, const float* v_conics,
                      const float* v_depths, float* v_means, float* v_quats, float* v_scales,
                      int threads) {
    const std::vector<View> views = make_views(s, viewmats, Ks);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t g = 0; g < s.gaussians; ++g) {
        float vm[3] = {0.f, 0.f, 0.f}, vq[4] = {0.f, 0.f, 0.f, 0.f}, vs[3] = {0.f, 0.f, 0.f};
        for (int c = 0; c < s.cameras; ++c) {
            const int64_t cg = static_cast<int64_t>(c) * s.gaussians + g;
            if (radii[cg] <= 0) continue;
            const View& v = views[c];
            // The opacity only decides culling, which radii already records.
            const Projected p = project_one(v, means + 3 * g, quats + 4 * g, scales + 3 * g, 1.f, s);
            project_one_vjp(v, p, scales + 3 * g, v_means2d + 2 * cg, v_conics + 3 * cg,
                            v_depths[cg], vm, vq, vs);
        }
        for (int i = 0; i < 3; ++i) v_means[3 * g + i] = vm[i];
        for (int i = 0; i < 4; ++i) v_quats[4 * g + i] = vq[i];
        for (int i = 0; i < 3; ++i) v_scales[3 * g + i] = vs[i];
    }
}

}  // namespace avatar_raster
