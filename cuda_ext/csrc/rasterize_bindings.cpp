// Torch bindings of the CPU Gaussian rasteriser: tensor checks, allocation, and the
// binning pipeline (count -> scan -> fill -> sort). The math is in the other
// rasterize_*.cpp files; avatar/render/cpu.py wraps these in autograd functions.
#include <torch/extension.h>

#include <vector>

#include "rasterize.h"

namespace ar = avatar_raster;
using torch::Tensor;

namespace {

void check_float(const Tensor& t, const char* name) {
    TORCH_CHECK(t.device().is_cpu(), name, " must be on the CPU");
    TORCH_CHECK(t.scalar_type() == torch::kFloat32, name, " must be float32");
    TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
}

void check_int(const Tensor& t, const char* name, torch::ScalarType type) {
    TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == type && t.is_contiguous(), name,
                " must be a contiguous CPU tensor of ", type);
}

ar::ProjectionSettings projection_settings(const Tensor& means, const Tensor& viewmats, int64_t width,
                                           int64_t height, double eps2d, double near_plane,
                                           double far_plane) {
    return {static_cast<int>(viewmats.size(0)), static_cast<int>(means.size(0)), static_cast<int>(width),
            static_cast<int>(height), static_cast<float>(eps2d), static_cast<float>(near_plane),
            static_cast<float>(far_plane)};
}

ar::ImageGeometry image_geometry(int64_t cameras, int64_t width, int64_t height) {
    TORCH_CHECK(width > 0 && height > 0, "width and height must be positive");
    return {static_cast<int>(cameras), static_cast<int>(width), static_cast<int>(height)};
}

ar::Splats splats(const Tensor& means2d, const Tensor& conics, const Tensor& depths,
                  const Tensor& extents, const Tensor& opacities, const Tensor& colors) {
    for (auto [t, name] : {std::pair{&means2d, "means2d"}, {&conics, "conics"}, {&depths, "depths"},
                           {&extents, "extents"}, {&opacities, "opacities"}, {&colors, "colors"}})
        check_float(*t, name);
    const int64_t N = means2d.size(1);
    const bool shared = colors.dim() == 2;
    return {static_cast<int>(N), static_cast<int>(colors.size(-1)), means2d.data_ptr<float>(),
            conics.data_ptr<float>(), depths.data_ptr<float>(), extents.data_ptr<float>(),
            opacities.data_ptr<float>(), colors.data_ptr<float>(), shared ? 0 : N * colors.size(-1)};
}

std::vector<Tensor> project_forward(const Tensor& means, const Tensor& quats, const Tensor& scales,
                                    const Tensor& opacities, const Tensor& viewmats, const Tensor& Ks,
                                    int64_t width, int64_t height, double eps2d, double near_plane,
                                    double far_plane, int64_t threads) {
    for (auto [t, name] : {std::pair{&means, "means"}, {&quats, "quats"}, {&scales, "scales"},
                           {&opacities, "opacities"}, {&viewmats, "viewmats"}, {&Ks, "Ks"}})
        check_float(*t, name);
    const auto s = projection_settings(means, viewmats, width, height, eps2d, near_plane, far_plane);
    const auto f32 = means.options();
    Tensor means2d = torch::empty({s.cameras, s.gaussians, 2}, f32);
    Tensor conics = torch::empty({s.cameras, s.gaussians, 3}, f32);
    Tensor depths = torch::empty({s.cameras, s.gaussians}, f32);
    Tensor extents = torch::empty({s.cameras, s.gaussians, 2}, f32);
    Tensor radii = torch::empty({s.cameras, s.gaussians}, f32.dtype(torch::kInt32));
    ar::project_forward(s, means.data_ptr<float>(), quats.data_ptr<float>(), scales.data_ptr<float>(),
                        opacities.data_ptr<float>(), viewmats.data_ptr<float>(), Ks.data_ptr<float>(),
                        means2d.data_ptr<float>(), conics.data_ptr<float>(), depths.data_ptr<float>(),
                        extents.data_ptr<float>(), radii.data_ptr<int32_t>(), static_cast<int>(threads));
    return {means2d, conics, depths, extents, radii};
}

std::vector<Tensor> project_backward(const Tensor& means, const Tensor& quats, const Tensor& scales,
                                     const Tensor& viewmats, const Tensor& Ks, const Tensor& radii,
                                     const Tensor& v_means2d, const Tensor& v_conics,
                                     const Tensor& v_depths, int64_t width, int64_t height,
                                     double eps2d, double near_plane, double far_plane,
                                     int64_t threads) {
    for (auto [t, name] : {std::pair{&v_means2d, "v_means2d"}, {&v_conics, "v_conics"},
                           {&v_depths, "v_depths"}})
        check_float(*t, name);
    check_int(radii, "radii", torch::kInt32);
    const auto s = projection_settings(means, viewmats, width, height, eps2d, near_plane, far_plane);
    Tensor v_means = torch::empty_like(means), v_quats = torch::empty_like(quats);
    Tensor v_scales = torch::empty_like(scales);
    ar::project_backward(s, means.data_ptr<float>(), quats.data_ptr<float>(), scales.data_ptr<float>(),
                         viewmats.data_ptr<float>(), Ks.data_ptr<float>(), radii.data_ptr<int32_t>(),
                         v_means2d.data_ptr<float>(), v_conics.data_ptr<float>(),
                         v_depths.data_ptr<float>(), v_means.data_ptr<float>(),
                         v_quats.data_ptr<float>(), v_scales.data_ptr<float>(), static_cast<int>(threads));
    return {v_means, v_quats, v_scales};
}

// Tile lists of the projected Gaussians, in (depth, index) order per tile.
struct Binned {
    Tensor tile_offsets, tile_gauss, slot_isect, cg_offsets;
    ar::TileLists lists() const {
        return {tile_offsets.data_ptr<int64_t>(), tile_gauss.data_ptr<int32_t>(), slot_isect.data_ptr<int32_t>()};
    }
};

Binned bin(const ar::ImageGeometry& img, const ar::Splats& sp, const Tensor& means2d, int nt) {
    const int64_t C = img.cameras, N = sp.gaussians;
    const auto i32 = means2d.options().dtype(torch::kInt32);
    const auto i64 = means2d.options().dtype(torch::kInt64);
    // Scratch reused across calls (per calling thread).
    thread_local std::vector<ar::TileHits> hits;
    thread_local std::vector<int32_t> counts, isect_tile;
    hits.resize(C * N);
    counts.resize(C * N);
    ar::count_tile_hits(img, sp, hits.data(), counts.data(), nt);
    Binned b;
    b.cg_offsets = torch::empty({C * N + 1}, i64);
    int64_t* off = b.cg_offsets.data_ptr<int64_t>();
    const int32_t* cnt = counts.data();
    off[0] = 0;
    for (int64_t i = 0; i < C * N; ++i) off[i + 1] = off[i] + cnt[i];
    const int64_t n_isects = off[C * N];
    TORCH_CHECK(n_isects < (int64_t{1} << 31), "too many tile intersections (", n_isects, ")");

    isect_tile.resize(n_isects);
    ar::fill_tile_hits(img, sp, hits.data(), off, isect_tile.data(), nt);
    b.tile_offsets = torch::empty({C * img.tiles_per_camera() + 1}, i64);
    b.tile_gauss = torch::empty({n_isects}, i32);
    b.slot_isect = torch::empty({n_isects}, i32);
    ar::sort_tile_hits(img, sp, n_isects, off, isect_tile.data(), b.tile_offsets.data_ptr<int64_t>(),
                       b.tile_gauss.data_ptr<int32_t>(), b.slot_isect.data_ptr<int32_t>(), nt);
    return b;
}

// Forward compositing. Returns the images and everything the backward needs:
// colors (C,H,W,D), alphas (C,H,W,1), depths (C,H,W,1), transmittance (C,H,W),
// last (C,H,W) int32, tile_offsets (C*T+1) int64, tile_gauss (I) int32,
// slot_isect (I) int32, cg_offsets (C*N+1) int64, with I the number of intersections.
std::vector<Tensor> rasterize_forward(const Tensor& means2d, const Tensor& conics, const Tensor& depths,
                                      const Tensor& extents, const Tensor& opacities,
                                      const Tensor& colors, const Tensor& backgrounds, int64_t width,
                                      int64_t height, int64_t threads) {
    const auto sp = splats(means2d, conics, depths, extents, opacities, colors);
    check_float(backgrounds, "backgrounds");
    const int64_t C = means2d.size(0), D = sp.channels;
    const auto img = image_geometry(C, width, height);
    const int nt = static_cast<int>(threads);
    const Binned b = bin(img, sp, means2d, nt);

    const auto f32 = means2d.options();
    Tensor out_colors = torch::empty({C, height, width, D}, f32);
    Tensor out_alphas = torch::empty({C, height, width, 1}, f32);
    Tensor out_depths = torch::empty({C, height, width, 1}, f32);
    Tensor transmittance = torch::empty({C, height, width}, f32);
    Tensor last = torch::empty({C, height, width}, f32.dtype(torch::kInt32));
    ar::composite_forward(img, sp, b.lists(), backgrounds.data_ptr<float>(), out_colors.data_ptr<float>(),
                          out_alphas.data_ptr<float>(), out_depths.data_ptr<float>(),
                          transmittance.data_ptr<float>(), last.data_ptr<int32_t>(), nt);
    return {out_colors, out_alphas, out_depths, transmittance, last, b.tile_offsets, b.tile_gauss,
            b.slot_isect, b.cg_offsets};
}

// The forward for looking only: RGB over the image `plate` (C,H,W,3) float32 in [0, 1] as
// uint8 (C,H,W,3), and alphas (C,H,W) float32. No backward: nothing is kept for one.
std::vector<Tensor> render_picture(const Tensor& means2d, const Tensor& conics, const Tensor& depths,
                                   const Tensor& extents, const Tensor& opacities, const Tensor& colors,
                                   const Tensor& plate, int64_t width, int64_t height, int64_t threads) {
    const auto sp = splats(means2d, conics, depths, extents, opacities, colors);
    TORCH_CHECK(sp.channels == 3, "render_picture draws RGB: colors must have 3 channels");
    check_float(plate, "plate");
    const int64_t C = means2d.size(0);
    TORCH_CHECK(plate.dim() == 4 && plate.size(0) == C && plate.size(1) == height && plate.size(2) == width &&
                plate.size(3) == 3, "plate must be (C, H, W, 3)");
    const auto img = image_geometry(C, width, height);
    const int nt = static_cast<int>(threads);
    const Binned b = bin(img, sp, means2d, nt);
    Tensor rgb = torch::empty({C, height, width, 3}, means2d.options().dtype(torch::kUInt8));
    Tensor alphas = torch::empty({C, height, width}, means2d.options());
    ar::composite_picture(img, sp, b.lists(), plate.data_ptr<float>(), rgb.data_ptr<uint8_t>(),
                          alphas.data_ptr<float>(), nt);
    return {rgb, alphas};
}

// Backward compositing: returns v_means2d (C,N,2), v_conics (C,N,3), v_depths (C,N),
// v_opacities (N), v_colors (shape of colors), v_backgrounds (C,D).
std::vector<Tensor> rasterize_backward(const Tensor& means2d, const Tensor& conics, const Tensor& depths,
                                       const Tensor& extents, const Tensor& opacities,
                                       const Tensor& colors, const Tensor& backgrounds,
                                       const Tensor& transmittance, const Tensor& last,
                                       const Tensor& tile_offsets, const Tensor& tile_gauss,
                                       const Tensor& slot_isect, const Tensor& cg_offsets,
                                       const Tensor& g_colors, const Tensor& g_alphas,
                                       const Tensor& g_depths, int64_t width, int64_t height,
                                       int64_t threads) {
    const auto sp = splats(means2d, conics, depths, extents, opacities, colors);
    for (auto [t, name] : {std::pair{&backgrounds, "backgrounds"}, {&transmittance, "transmittance"},
                           {&g_colors, "g_colors"}, {&g_alphas, "g_alphas"}, {&g_depths, "g_depths"}})
        check_float(*t, name);
    check_int(last, "last", torch::kInt32);
    check_int(tile_gauss, "tile_gauss", torch::kInt32);
    check_int(slot_isect, "slot_isect", torch::kInt32);
    check_int(tile_offsets, "tile_offsets", torch::kInt64);
    check_int(cg_offsets, "cg_offsets", torch::kInt64);
    const int64_t C = means2d.size(0), D = sp.channels, n_isects = tile_gauss.size(0);
    const auto img = image_geometry(C, width, height);
    const int nt = static_cast<int>(threads);
    const auto f32 = means2d.options();

    thread_local std::vector<float> records, tile_v_bg;
    records.resize(n_isects * (ar::kRecordHead + D));
    tile_v_bg.resize(C * img.tiles_per_camera() * D);
    const ar::TileLists tl{tile_offsets.data_ptr<int64_t>(), tile_gauss.data_ptr<int32_t>(),
                          slot_isect.data_ptr<int32_t>()};
    ar::composite_backward(img, sp, tl, backgrounds.data_ptr<float>(), transmittance.data_ptr<float>(),
                           last.data_ptr<int32_t>(), g_colors.data_ptr<float>(),
                           g_alphas.data_ptr<float>(), g_depths.data_ptr<float>(), records.data(),
                           tile_v_bg.data(), nt);

    Tensor v_means2d = torch::empty_like(means2d), v_conics = torch::empty_like(conics);
    Tensor v_depths = torch::empty_like(depths), v_opacities = torch::empty_like(opacities);
    Tensor v_colors = torch::empty_like(colors), v_backgrounds = torch::empty({C, D}, f32);
    ar::reduce_gradients(img, sp, cg_offsets.data_ptr<int64_t>(),
                         records.data(), tile_v_bg.data(), v_means2d.data_ptr<float>(),
                         v_conics.data_ptr<float>(), v_depths.data_ptr<float>(),
                         v_opacities.data_ptr<float>(), v_colors.data_ptr<float>(),
                         v_backgrounds.data_ptr<float>(), nt);
    return {v_means2d, v_conics, v_depths, v_opacities, v_colors, v_backgrounds};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.doc() = "CPU 3D Gaussian splatting rasteriser (EWA projection + tile compositing)";
    // The GIL is released while a kernel runs (they touch no Python object), so frames rendered on
    // two Python threads run on two cores at once: the viewer's frame-parallel engine relies on it.
    const auto no_gil = py::call_guard<py::gil_scoped_release>();
    m.def("project_forward", &project_forward, no_gil);
    m.def("project_backward", &project_backward, no_gil);
    m.def("rasterize_forward", &rasterize_forward, no_gil);
    m.def("rasterize_backward", &rasterize_backward, no_gil);
    m.def("render_picture", &render_picture, no_gil);
}
