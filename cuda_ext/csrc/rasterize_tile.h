// Per-tile helpers shared by the compositing forward and backward passes.
#pragma once

#include <algorithm>
#include <cmath>
#include <vector>

#include "rasterize.h"
#include "rasterize_simd.h"

namespace avatar_raster {

// Slack on a Gaussian's row range (see rasterize_bin.cpp for the same idea on tiles).
constexpr float kRowSlackRelative = 1e-3f;
constexpr float kRowSlackAbsolute = 1e-3f;

// Where a tile lies in the batch of images.
struct TileLocation {
    int camera;
    int x0, y0;       // first pixel
    int cols, rows;   // pixels inside the image (<= kTileSize)
    int64_t first_slot, n_slots;

    TileLocation(const ImageGeometry& img, const TileLists& tl, int64_t tile) {
        const int per_camera = img.tiles_per_camera();
        camera = static_cast<int>(tile / per_camera);
        const int t = static_cast<int>(tile % per_camera);
        x0 = (t % img.tiles_x()) * kTileSize;
        y0 = (t / img.tiles_x()) * kTileSize;
        cols = std::min(kTileSize, img.width - x0);
        rows = std::min(kTileSize, img.height - y0);
        first_slot = tl.tile_offsets[tile];
        n_slots = tl.tile_offsets[tile + 1] - first_slot;
    }

    int64_t pixel(const ImageGeometry& img, int r, int col) const {  // flat (C, H, W) index
        return (static_cast<int64_t>(camera) * img.height + y0 + r) * img.width + x0 + col;
    }

    float pixel_y(int r) const { return y0 + r + 0.5f; }
};

// A run of a tile's Gaussians (slots [begin, begin + size)), front to back, gathered into
// contiguous arrays so the per-row loops read them without indirection. The arrays are
// padded to whole SIMD vectors with Gaussians that reach no pixel.
struct TileGaussians {
    std::vector<float> mx, my, half_a, b, half_c, opacity, depth;
    std::vector<float> sigma_max;  // footprint bound on sigma (with slack), see row_reach_mask
    std::vector<float> vertex;     // -Q01 / Q00: dx of a row's sigma minimum per unit dy
    std::vector<const float*> color;
    std::vector<int> row_lo, row_hi;  // rows of the tile the footprint can reach (inclusive)

    // What both passes need; the forward adds with_reach (row_reach_mask), the backward
    // with_rows (row_lo, row_hi).
    void gather(const Splats& sp, const TileLists& tl, const TileLocation& loc, int64_t begin,
                int64_t size, bool with_reach, bool with_rows) {
        const int64_t padded = (size + kVecWidth - 1) / kVecWidth * kVecWidth;
        resize(padded);
        const int64_t base = static_cast<int64_t>(loc.camera) * sp.gaussians;
        const float* colors = sp.colors + loc.camera * sp.color_camera_stride;
        for (int64_t j = 0; j < size; ++j) {
            const int64_t g = tl.tile_gauss[loc.first_slot + begin + j];
            const int64_t cg = base + g;
            const float A = sp.conics[3 * cg], B = sp.conics[3 * cg + 1], C = sp.conics[3 * cg + 2];
            mx[j] = sp.means2d[2 * cg];
            my[j] = sp.means2d[2 * cg + 1];
            half_a[j] = 0.5f * A;
            b[j] = B;
            half_c[j] = 0.5f * C;
            opacity[j] = sp.opacities[g];
            depth[j] = sp.depths[cg];
            color[j] = colors + g * sp.channels;
            if (with_rows) {  // rows whose pixel centre lies within the vertical half-extent
                const float ey = sp.extents[2 * cg + 1] * (1.f + kRowSlackRelative) + kRowSlackAbsolute;
                const float rel = my[j] - loc.pixel_y(0);
                row_lo[j] = std::max(0, static_cast<int>(std::ceil(rel - ey)));
                row_hi[j] = std::min(loc.rows - 1, static_cast<int>(std::floor(rel + ey)));
            }
            if (with_reach) {
                // The footprint is sigma <= extend^2 / 2 with extent_x = extend sqrt(cov_xx),
                // cov_xx = Q11 / det (as in rasterize_bin.cpp).
                const float ex = sp.extents[2 * cg];
                const float sigma = 0.5f * ex * ex * (A * C - B * B) / C;
                sigma_max[j] = sigma * (1.f + kRowSlackRelative) + kRowSlackAbsolute;
                vertex[j] = -B / A;
            }
        }
        for (int64_t j = size; j < padded; ++j) {  // padding: reaches nothing
            mx[j] = my[j] = b[j] = opacity[j] = depth[j] = vertex[j] = 0.f;
            half_a[j] = half_c[j] = 1.f;
            sigma_max[j] = -1.f;
            color[j] = nullptr;
            row_lo[j] = 0;
            row_hi[j] = -1;
        }
    }

    // Bit i set iff Gaussian first + i (of kVecWidth) may reach a pixel centre of the row at
    // height py whose x lie in [px_lo, px_hi]. With d = mean - pixel, sigma is convex in dx,
    // so its minimum over the row's pixels is at the vertex clamped to the row; the slack in
    // sigma_max keeps the test conservative, so skipping a row it rejects changes nothing.
    // Also writes the negated row constants of gauss_power, -Q01 dy and -Q11/2 dy^2.
    uint32_t row_reach_mask(int first, float py, float px_lo, float px_hi, float* neg_b_dy,
                            float* neg_row_term) const {
        Vec m_x, m_y, h_a, bb, h_c, s_max, vx;
        std::memcpy(&m_x, mx.data() + first, sizeof(Vec));
        std::memcpy(&m_y, my.data() + first, sizeof(Vec));
        std::memcpy(&h_a, half_a.data() + first, sizeof(Vec));
        std::memcpy(&bb, b.data() + first, sizeof(Vec));
        std::memcpy(&h_c, half_c.data() + first, sizeof(Vec));
        std::memcpy(&s_max, sigma_max.data() + first, sizeof(Vec));
        std::memcpy(&vx, vertex.data() + first, sizeof(Vec));
        const Vec dy = m_y - py;
        const Vec neg_b_dy_v = -(bb * dy), neg_row_term_v = -(h_c * dy * dy);
        std::memcpy(neg_b_dy + first, &neg_b_dy_v, sizeof(Vec));
        std::memcpy(neg_row_term + first, &neg_row_term_v, sizeof(Vec));
        const Vec dx = vec_min(vec_max(vx * dy, m_x - px_hi), m_x - px_lo);
        const Vec sigma = h_a * dx * dx + bb * dy * dx + h_c * dy * dy;
        return lane_bits(sigma <= s_max);
    }

  private:
    void resize(int64_t n) {
        for (auto* v : {&mx, &my, &half_a, &b, &half_c, &opacity, &depth, &sigma_max, &vertex}) v->resize(n);
        color.resize(n);
        row_lo.resize(n);
        row_hi.resize(n);
    }
};

}  // namespace avatar_raster
