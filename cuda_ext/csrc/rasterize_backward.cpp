// Backward of the compositing, per tile and back to front, then a fixed-order reduction.
//
// Each tile replays its Gaussians from the last one any of its pixels used down to the
// first, recovering the transmittance before each Gaussian by dividing by (1 - alpha)
// (as in 3DGS), and writes one gradient record per (tile, Gaussian) intersection. The
// records of a Gaussian are then summed in tile order, so the result is bitwise the same
// for any number of threads, with memory proportional to intersections, not pixels.
#include <algorithm>
#include <type_traits>
#include <vector>

#include "rasterize.h"
#include "rasterize_simd.h"
#include "rasterize_tile.h"

namespace avatar_raster {
namespace {

struct PixelGradients {
    const float* colors;  // (C, H, W, D)
    const float* alphas;  // (C, H, W)
    const float* depths;  // (C, H, W)
};

// Per-thread state of the tile being replayed, [row][vector of the row].
struct ReplayState {
    Vec T[kTileSize][kRowVectors];             // transmittance after the Gaussians not yet replayed
    Vec behind[kTileSize][kRowVectors];        // dL/dpixel . (everything behind, background included)
    Vec grad_alpha_t[kTileSize][kRowVectors];  // dL/dalpha_pixel * final transmittance
    Vec grad_depth[kTileSize][kRowVectors];    // dL/ddepth_pixel
    VecInt last[kTileSize][kRowVectors];       // last slot each pixel used (-1: none)
    int32_t row_last[kTileSize];
    std::vector<Vec> grad_color;   // (kTileSize, kRowVectors, D): dL/dcolour_pixel
    std::vector<Vec> colour_sums;  // (kRowVectors, D) scratch for a runtime channel count
    TileGaussians gs;

    Vec* row_grad_color(int r, int D) { return grad_color.data() + static_cast<size_t>(r) * kRowVectors * D; }

    // Loads the tile's pixels; returns the last slot any pixel used (-1 if none) and writes
    // the tile's share of the background gradient (D).
    int32_t load(const ImageGeometry& img, const TileLocation& loc, int D, const float* bg,
                 const float* final_t, const int32_t* last_in, const PixelGradients& g,
                 float* v_bg) {
        grad_color.assign(static_cast<size_t>(kTileSize) * kRowVectors * D, Vec{});
        std::fill(v_bg, v_bg + D, 0.f);
        int32_t max_last = -1;
        for (int r = 0; r < kTileSize; ++r) {
            for (int v = 0; v < kRowVectors; ++v) {
                T[r][v] = behind[r][v] = grad_alpha_t[r][v] = grad_depth[r][v] = Vec{};
                last[r][v] = splat_int(-1);
            }
            row_last[r] = -1;
            for (int col = 0; r < loc.rows && col < loc.cols; ++col) {
                const int v = col / kVecWidth, lane = col % kVecWidth;
                const int64_t pix = loc.pixel(img, r, col);
                const float t = final_t[pix];
                float behind_p = 0.f;
                for (int k = 0; k < D; ++k) {
                    const float gk = g.colors[pix * D + k];
                    row_grad_color(r, D)[v * D + k][lane] = gk;
                    behind_p += gk * bg[k];
                    v_bg[k] += gk * t;
                }
                T[r][v][lane] = t;
                behind[r][v][lane] = t * behind_p;
                grad_alpha_t[r][v][lane] = g.alphas[pix] * t;
                grad_depth[r][v][lane] = g.depths[pix];
                last[r][v][lane] = last_in[pix];
                row_last[r] = std::max(row_last[r], last_in[pix]);
            }
            max_last = std::max(max_last, row_last[r]);
        }
        return max_last;
    }
};

// Replays gathered Gaussian j (slot j of the tile) over its rows, back to front, and writes
// its gradient record. DC > 0: compile-time channel count.
template <int DC>
void replay_gaussian(ReplayState& st, const TileLocation& loc, int32_t j, int channels, float* rec) {
    const int D = DC > 0 ? DC : channels;
    const TileGaussians& gs = st.gs;
    const float mx = gs.mx[j], half_a = gs.half_a[j], b = gs.b[j], half_c = gs.half_c[j];
    const float opacity = gs.opacity[j], z = gs.depth[j];
    const float* c = gs.color[j];
    const VecInt slot = splat_int(j);
    // Per-lane sums over the rows of d/d(mean x, mean y, conic A, B, C), opacity, depth, colours.
    Vec s_mx{}, s_my{}, s_a{}, s_b{}, s_c{}, s_opacity{}, s_depth{};
    Vec colour_local[DC > 0 ? DC : 1] = {};
    if (DC == 0) st.colour_sums.assign(D, Vec{});
    Vec* s_colour = DC > 0 ? colour_local : st.colour_sums.data();
    for (int r = gs.row_lo[j]; r <= gs.row_hi[j]; ++r) {
        if (st.row_last[r] < j) continue;
        const float dy = gs.my[j] - loc.pixel_y(r);
        const Vec* g_colour_row = st.row_grad_color(r, D);
        for (int v = 0; v < kRowVectors; ++v) {
            const Vec dx = mx - row_pixel_x(loc.x0, v);
            const Vec sigma = gauss_power(dx, half_a, b * dy, half_c * dy * dy);
            const Vec e = vec_exp(-sigma);
            const Vec oe = opacity * e;  // the same product as unclamped_alpha in the forward
            const Vec alpha = clamp_alpha(oe);
            const VecInt ok = (slot <= st.last[r][v]) & passes(sigma, alpha);
            const Vec inv_one_minus = 1.f / (1.f - alpha);
            const Vec t_before = st.T[r][v] * inv_one_minus;
            const Vec w = ok ? alpha * t_before : Vec{};
            const Vec* g_colour = g_colour_row + v * D;
            const Vec g_depth = st.grad_depth[r][v];
            Vec dot = g_depth * z;  // dL/dpixel . (colour, depth) of this Gaussian
            for (int k = 0; k < D; ++k) dot += g_colour[k] * c[k];
            // dL/dalpha: its own contribution minus the dimming of everything behind it.
            const Vec v_alpha = t_before * dot - (st.behind[r][v] - st.grad_alpha_t[r][v]) * inv_one_minus;
            const VecInt through = ok & (oe <= kAlphaMax);  // the clamp blocks the gradient
            const Vec v_sigma = through ? -v_alpha * alpha : Vec{};
            s_opacity += through ? v_alpha * e : Vec{};
            s_mx += v_sigma * (2.f * half_a * dx + b * dy);  // d sigma / d mean = Q d
            s_my += v_sigma * (b * dx + 2.f * half_c * dy);
            s_a += v_sigma * dx * dx;                        // d sigma / dQ00 = dx^2 / 2
            s_b += v_sigma * dx * dy;                        // d sigma / dQ01 = dx dy
            s_c += v_sigma * (dy * dy);                      // d sigma / dQ11 = dy^2 / 2
            s_depth += w * g_depth;
            for (int k = 0; k < D; ++k) s_colour[k] += w * g_colour[k];
            st.behind[r][v] += w * dot;
            st.T[r][v] = ok ? t_before : st.T[r][v];
        }
    }
    rec[0] = lane_sum(s_mx);
    rec[1] = lane_sum(s_my);
    rec[2] = 0.5f * lane_sum(s_a);
    rec[3] = lane_sum(s_b);
    rec[4] = 0.5f * lane_sum(s_c);
    rec[5] = lane_sum(s_opacity);
    rec[6] = lane_sum(s_depth);
    for (int k = 0; k < D; ++k) rec[kRecordHead + k] = lane_sum(s_colour[k]);
}

template <int DC>
void replay_tile(const ImageGeometry& img, const Splats& sp, const TileLists& tl, int64_t tile,
                 const float* backgrounds, const float* final_t, const int32_t* last,
                 const PixelGradients& g, ReplayState& st, float* records, float* tile_v_bg) {
    const TileLocation loc(img, tl, tile);
    const int D = DC > 0 ? DC : sp.channels, R = kRecordHead + D;
    const int32_t max_last = st.load(img, loc, D, backgrounds + static_cast<int64_t>(loc.camera) * D,
                                     final_t, last, g, tile_v_bg + tile * D);
    // Each slot's record goes to its intersection's place, next to the Gaussian's others.
    const int32_t* isect = tl.slot_isect + loc.first_slot;
    for (int64_t j = max_last + 1; j < loc.n_slots; ++j) std::fill_n(records + isect[j] * int64_t{R}, R, 0.f);
    st.gs.gather(sp, tl, loc, 0, max_last + 1, /*with_reach=*/false, /*with_rows=*/true);
    for (int32_t j = max_last; j >= 0; --j)
        replay_gaussian<DC>(st, loc, j, D, records + isect[j] * int64_t{R});
}

template <int DC>
void replay_all_tiles(const ImageGeometry& img, const Splats& sp, const TileLists& tl,
                      const float* backgrounds, const float* transmittance, const int32_t* last,
                      const PixelGradients& g, float* records, float* tile_v_bg, int threads) {
    const int64_t n_tiles = static_cast<int64_t>(img.cameras) * img.tiles_per_camera();
#pragma omp parallel num_threads(threads)
    {
        ReplayState st;
#pragma omp for schedule(dynamic, 1)
        for (int64_t tile = 0; tile < n_tiles; ++tile)
            replay_tile<DC>(img, sp, tl, tile, backgrounds, transmittance, last, g, st, records, tile_v_bg);
    }
}

}  // namespace

void composite_backward(const ImageGeometry& img, const Splats& sp, const TileLists& tl,
                        const float* backgrounds, const float* transmittance,
                        const int32_t* last, const float* g_colors, const float* g_alphas,
                        const float* g_depths, float* records, float* tile_v_backgrounds,
                        int threads) {
    const PixelGradients g{g_colors, g_alphas, g_depths};
    auto run = [&](auto channels) {
        replay_all_tiles<decltype(channels)::value>(img, sp, tl, backgrounds, transmittance, last, g,
                                                    records, tile_v_backgrounds, threads);
    };
    // Compile-time channel counts for the common cases; any other count works too.
    if (sp.channels == 3)
        run(std::integral_constant<int, 3>{});
    else if (sp.channels == 1)
        run(std::integral_constant<int, 1>{});
    else
        run(std::integral_constant<int, 0>{});
}

void reduce_gradients(const ImageGeometry& img, const Splats& sp, const int64_t* cg_offsets,
                      const float* records,
                      const float* tile_v_backgrounds, float* v_means2d, float* v_conics,
                      float* v_depths, float* v_opacities, float* v_colors, float* v_backgrounds,
                      int threads) {
    const int C = img.cameras, N = sp.gaussians, D = sp.channels, R = kRecordHead + D;
    const bool shared_colors = sp.color_camera_stride == 0;
    const int64_t total = static_cast<int64_t>(C) * N;
    std::vector<float> v_opacity_cam(total);
    std::vector<float> v_color_cam(shared_colors ? total * D : 0);
    float* color_out = shared_colors ? v_color_cam.data() : v_colors;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t cg = 0; cg < total; ++cg) {
        float acc[kRecordHead] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
        float* vc = color_out + cg * D;
        std::fill(vc, vc + D, 0.f);
        for (int64_t e = cg_offsets[cg]; e < cg_offsets[cg + 1]; ++e) {
            const float* rec = records + e * R;
            for (int i = 0; i < kRecordHead; ++i) acc[i] += rec[i];
            for (int k = 0; k < D; ++k) vc[k] += rec[kRecordHead + k];
        }
        v_means2d[2 * cg] = acc[0];
        v_means2d[2 * cg + 1] = acc[1];
        for (int i = 0; i < 3; ++i) v_conics[3 * cg + i] = acc[2 + i];
        v_opacity_cam[cg] = acc[5];
        v_depths[cg] = acc[6];
    }
    // Parameters shared by the cameras: sum in camera order.
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t g = 0; g < N; ++g) {
        float vo = 0.f;
        for (int c = 0; c < C; ++c) vo += v_opacity_cam[static_cast<int64_t>(c) * N + g];
        v_opacities[g] = vo;
        if (!shared_colors) continue;
        for (int k = 0; k < D; ++k) {
            float vc = 0.f;
            for (int c = 0; c < C; ++c) vc += v_color_cam[(static_cast<int64_t>(c) * N + g) * D + k];
            v_colors[g * D + k] = vc;
        }
    }
    const int tiles = img.tiles_per_camera();
    for (int c = 0; c < C; ++c)
        for (int k = 0; k < D; ++k) {
            float sum = 0.f;
            const float* per_tile = tile_v_backgrounds + static_cast<int64_t>(c) * tiles * D + k;
            for (int t = 0; t < tiles; ++t) sum += per_tile[t * D];
            v_backgrounds[c * D + k] = sum;
        }
}

}  // namespace avatar_raster
